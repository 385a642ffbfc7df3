package session

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// encodeCases are value maps as sessions hold them (compact, from Set) and
// as stores return them (PostgreSQL's spacing), plus everything
// encodeValues leaves to json.Marshal.
func encodeCases(t testing.TB) map[string]map[string]json.RawMessage {
	cases := map[string]map[string]json.RawMessage{
		"nil":                 nil,
		"empty":               {},
		"one":                 {"user": json.RawMessage(`{"id":42,"name":"Ada"}`)},
		"sorted by key":       {"b": json.RawMessage(`2`), "a": json.RawMessage(`1`), "c": json.RawMessage(`3`), "": json.RawMessage(`0`)},
		"spaced":              {"user": json.RawMessage(" {\"id\": 42,\n\t\"name\" : \"Ada\" } ")},
		"html in a value":     {"a": json.RawMessage(`"<b>&amp;</b>"`)},
		"U+2028 in a value":   {"a": json.RawMessage("\"line\u2028para\u2029\"")},
		"other E2 character":  {"a": json.RawMessage(`"€ and ✓"`)},
		"html in a key":       {"<a>&": json.RawMessage(`1`)},
		"quote in a key":      {`a"b`: json.RawMessage(`1`), `c\d`: json.RawMessage(`2`)},
		"control in a key":    {"a\nb\x00": json.RawMessage(`1`)},
		"non-ASCII key":       {"ключ": json.RawMessage(`"значение"`), "é": json.RawMessage(`1`)},
		"invalid UTF-8 key":   {"\xff": json.RawMessage(`1`)},
		"invalid UTF-8 value": {"a": json.RawMessage("\"\xff\"")},
		"nil value":           {"a": nil},
		"empty value":         {"a": json.RawMessage{}},
		"invalid value":       {"a": json.RawMessage(`{"b":}`)},
		"two values":          {"a": json.RawMessage(`1 2`)},
		"escapes kept":        {"a": json.RawMessage(`"\u003c\"\\\/\n"`)},
	}
	many := map[string]json.RawMessage{}
	for i := range 40 {
		many[fmt.Sprintf("k%02d", 39-i)] = json.RawMessage(fmt.Sprint(i))
	}
	cases["more keys than the stack holds"] = many
	for _, c := range splitCases {
		var values map[string]json.RawMessage
		if json.Unmarshal([]byte(c.data), &values) == nil {
			cases["stored "+c.name] = values
		}
	}
	return cases
}

// TestEncodeValues checks that encodeValues gives what json.Marshal gives,
// the text or the error.
func TestEncodeValues(t *testing.T) {
	t.Parallel()
	for name, values := range encodeCases(t) {
		checkLikeMarshal(t, name, values)
	}
}

func checkLikeMarshal(t *testing.T, name string, values map[string]json.RawMessage) {
	t.Helper()
	got, err := encodeValues(values)
	want, wantErr := json.Marshal(values)
	if values == nil {
		want = []byte("{}") // nil is an empty session, not null
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Errorf("%s: error %v, json.Marshal's %v", name, err, wantErr)
	case err != nil && !strings.HasSuffix(err.Error(), wantErr.Error()):
		t.Errorf("%s: error %q, want json.Marshal's %q", name, err, wantErr)
	case err == nil && got != string(want):
		t.Errorf("%s: encodeValues =\n%s\njson.Marshal =\n%s", name, got, want)
	}
}

// FuzzEncodeValues checks encodeValues against json.Marshal on maps of
// arbitrary keys and raw values, valid JSON or not.
func FuzzEncodeValues(f *testing.F) {
	f.Add("a", `1`, "b", `{"c": [1, 2]}`)
	f.Add("<", `"&"`, "", ``)
	f.Add("é", "\"\u2028\"", "x", `nul`)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		checkLikeMarshal(t, "fuzz", map[string]json.RawMessage{k1: json.RawMessage(v1), k2: json.RawMessage(v2)})
	})
}

// BenchmarkEncodeValues compares encodeValues with the json.Marshal it
// replaces in the PostgreSQL store's writes.
func BenchmarkEncodeValues(b *testing.B) {
	values := map[string]json.RawMessage{
		"user": json.RawMessage(`{"id":42,"name":"Ada"}`),
		"cart": json.RawMessage(`[1,2,3]`),
		"n":    json.RawMessage(`7`),
	}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalValues(values); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeValues(values); err != nil {
				b.Fatal(err)
			}
		}
	})
}
