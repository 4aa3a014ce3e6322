// The value types the client's API speaks in — `IndexPolicy`, `RecordHeader`,
// `SchemaCompatibility`, `InvalidRecordPolicy`, `MillraceError` and its codes — come with
// `import MillraceClient`, so an application needs no second import.
@_exported import MillraceFormat
