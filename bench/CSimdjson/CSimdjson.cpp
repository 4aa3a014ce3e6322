#include "CSimdjson.h"

#include <simdjson.h>

struct millrace_simdjson_parser {
    simdjson::dom::parser parser;
};

millrace_simdjson_parser *millrace_simdjson_new(void) { return new millrace_simdjson_parser(); }

void millrace_simdjson_free(millrace_simdjson_parser *parser) { delete parser; }

int millrace_simdjson_parse(millrace_simdjson_parser *parser, const uint8_t *bytes, size_t length) {
    simdjson::dom::element document;
    // The bytes are not padded (they come off the wire): simdjson copies them into its own
    // padded buffer, as it would in the broker.
    auto error = parser->parser.parse(bytes, length, true).get(document);
    return static_cast<int>(error);
}

static long visit(simdjson::dom::element element) {
    long count = 1;
    switch (element.type()) {
    case simdjson::dom::element_type::OBJECT:
        for (auto field : simdjson::dom::object(element)) {
            count += static_cast<long>(field.key.size() > 0 ? 1 : 1);
            count += visit(field.value);
        }
        break;
    case simdjson::dom::element_type::ARRAY:
        for (auto child : simdjson::dom::array(element)) count += visit(child);
        break;
    case simdjson::dom::element_type::STRING: {
        std::string_view text = element.get_string().value_unsafe();
        count += text.empty() ? 0 : 0;
        break;
    }
    case simdjson::dom::element_type::DOUBLE:
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64: {
        double value = 0;
        (void)element.get_double().get(value);
        count += value != value ? 1 : 0;
        break;
    }
    default:
        break;
    }
    return count;
}

long millrace_simdjson_walk(millrace_simdjson_parser *parser, const uint8_t *bytes, size_t length) {
    simdjson::dom::element document;
    if (parser->parser.parse(bytes, length, true).get(document) != simdjson::SUCCESS) return -1;
    return visit(document);
}
