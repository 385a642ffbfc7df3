package session

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// encodeValues returns values as a JSON object in a string: pgx sends a
// string as text, which PostgreSQL parses as jsonb in every query mode,
// where a []byte would go as bytea under the simple protocol and exec mode.
//
// It gives exactly what json.Marshal gives, errors included, but in most
// cases without it: keys in plain ASCII and values with nothing to escape
// for HTML (which json.Marshal does to '<', '>', '&', U+2028 and U+2029)
// are written in json.Marshal's order, each value compacted and checked by
// json.Compact as json.Marshal does, without the reflection json.Marshal
// walks a map with. Anything else goes to json.Marshal.
func encodeValues(values map[string]json.RawMessage) (string, error) {
	if values == nil {
		return "{}", nil
	}
	var stack [16]string
	keys := stack[:0]
	size := 2
	for k, v := range values {
		if !plainKey(k) || !plainValue(v) {
			return marshalValues(values)
		}
		keys = append(keys, k)
		size += entrySize(k, v)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.Grow(size)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(k)
		b.WriteString(`":`)
		if err := json.Compact(&b, values[k]); err != nil {
			return marshalValues(values) // for json.Marshal's own error
		}
	}
	b.WriteByte('}')
	return b.String(), nil
}

// marshalValues is encodeValues through json.Marshal.
func marshalValues(values map[string]json.RawMessage) (string, error) {
	data, err := json.Marshal(values)
	if err != nil {
		return "", fmt.Errorf("session: encode values: %w", err)
	}
	return string(data), nil
}

// plainKey reports whether json.Marshal writes key as it is, in quotes:
// printable ASCII with no quote, backslash or character it escapes for
// HTML.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainValue reports whether json.Marshal's compaction of value escapes
// nothing: no '<', '>' or '&', and no byte that may start U+2028 or
// U+2029. An empty value (json.Marshal writes a nil one as null) is not
// plain either.
func plainValue(value json.RawMessage) bool {
	if len(value) == 0 {
		return false
	}
	for _, c := range value {
		if c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return false
		}
	}
	return true
}
