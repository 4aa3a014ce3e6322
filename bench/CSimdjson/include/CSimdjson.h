// A small C API over simdjson (Debian's libsimdjson-dev), used only by `millrace-bench
// schema` to compare it with MillraceSchema's own scanner on the same records.
#ifndef MILLRACE_CSIMDJSON_H
#define MILLRACE_CSIMDJSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct millrace_simdjson_parser millrace_simdjson_parser;

millrace_simdjson_parser *millrace_simdjson_new(void);
void millrace_simdjson_free(millrace_simdjson_parser *parser);

/// Parses `length` bytes with the DOM parser; 0 when valid JSON, else simdjson's error code.
int millrace_simdjson_parse(millrace_simdjson_parser *parser, const uint8_t *bytes, size_t length);

/// Parses, then walks every value of the document (what a validator must do to see it);
/// returns the number of values visited, or -1 when the text is not JSON.
long millrace_simdjson_walk(millrace_simdjson_parser *parser, const uint8_t *bytes, size_t length);

#ifdef __cplusplus
}
#endif

#endif
