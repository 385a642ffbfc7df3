package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// splitCases are stored values as PostgreSQL prints them and as anything
// else might have written them. fast says whether splitValues takes the
// input itself; the rest go to json.Unmarshal, which accepts or rejects
// them.
var splitCases = []struct {
	name, data string
	fast       bool
}{
	{"empty object", `{}`, true},
	{"empty object in spaces", " \t\r\n{ \t\r\n} \t\r\n", true},
	{"jsonb", `{"user": {"id": 42, "name": "Ada"}}`, true},
	{"compact", `{"a":1,"b":"two","c":[3],"d":{"e":null}}`, true},
	{"whitespace everywhere", "\n{\t\"a\" :\r\n[ 1 ,\t{ \"b\" : [ ] } , { } ]\n,\"c\"\t:\"\"\r}\n", true},
	{"nested empties", `{"a": [], "b": {}, "c": [{}], "d": [[[]]], "e": {"f": {"g": {}}}}`, true},
	{"escaped quotes and backslashes", `{"a": "x\"y\\z", "b": "\\", "c": "\"", "d": "\\\"\\\\"}`, true},
	{"every escape", `{"a": "\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00\u0000"}`, true},
	{"brace and bracket in strings", `{"a": "}", "b": "]", "c": "{[", "d": [",}"], "e": {"}": "]"}}`, true},
	{"unicode", `{"ключ": "значение 😀", "名前": ["日本", "€"], "é": "e\u0301"}`, true},
	{"numbers", `{"a": 0, "b": -0, "c": 12.5, "d": -3.25e-10, "e": 1E+2, "f": 6e7, "g": 123456789012345678901234567890}`, true},
	{"literals", `{"a": true, "b": false, "c": null, "d": [true, false, null]}`, true},
	{"repeated key keeps the last", `{"a": 1, "b": 2, "a": 3}`, true},
	{"empty key", `{"": 1}`, true},
	{"invalid UTF-8 in a value", "{\"a\": \"\xff\xfe\"}", true},
	{"many keys", `{"k0": 0, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9, "k10": 10, ` +
		`"k11": 11, "k12": 12, "k13": 13, "k14": 14, "k15": 15, "k16": 16, "k17": 17, "k18": 18, "k19": 19}`, true},
	{"nested to the limit", `{"a": ` + strings.Repeat("[", maxSplitDepth) + strings.Repeat("]", maxSplitDepth) + `}`, true},

	// Accepted, by json.Unmarshal.
	{"key with an escape", `{"a\"b": 1, "c\\d": 2, "\u0041": 3}`, false},
	{"key with invalid UTF-8", "{\"\xff\": 1}", false},
	{"nested past the limit", `{"a": ` + strings.Repeat("[", maxSplitDepth+1) + strings.Repeat("]", maxSplitDepth+1) + `}`, false},
	{"null", `null`, false},

	// Rejected.
	{"nothing", ``, false},
	{"spaces", "  \n", false},
	{"array", `[]`, false},
	{"string", `"{}"`, false},
	{"number", `1`, false},
	{"unclosed", `{`, false},
	{"unclosed after a member", `{"a": 1`, false},
	{"unclosed after a comma", `{"a": 1,`, false},
	{"closing only", `}`, false},
	{"key without value", `{"a"}`, false},
	{"colon without value", `{"a":}`, false},
	{"trailing comma", `{"a": 1,}`, false},
	{"lone comma", `{,}`, false},
	{"trailing garbage", `{"a": 1}x`, false},
	{"second object", `{"a": 1}{}`, false},
	{"unquoted key", `{a: 1}`, false},
	{"single quotes", `{'a': 1}`, false},
	{"leading zero", `{"a": 01}`, false},
	{"bare point", `{"a": 1.}`, false},
	{"no integer part", `{"a": .5}`, false},
	{"lone minus", `{"a": -}`, false},
	{"plus sign", `{"a": +1}`, false},
	{"empty exponent", `{"a": 1e}`, false},
	{"signed empty exponent", `{"a": 1e+}`, false},
	{"hex number", `{"a": 0x1}`, false},
	{"NaN", `{"a": NaN}`, false},
	{"short literal", `{"a": tru}`, false},
	{"long literal", `{"a": truex}`, false},
	{"capital literal", `{"a": True}`, false},
	{"unknown escape", `{"a": "\x"}`, false},
	{"short unicode escape", `{"a": "\u12"}`, false},
	{"bad unicode escape", `{"a": "\u12g4"}`, false},
	{"escape at the end", `{"a": "\`, false},
	{"control character", "{\"a\": \"\x01\"}", false},
	{"control character in a key", "{\"\n\": 1}", false},
	{"unclosed string", `{"a": "b}`, false},
	{"trailing comma in an array", `{"a": [1,]}`, false},
	{"missing comma", `{"a": [1 2]}`, false},
	{"missing comma between members", `{"a": 1 "b": 2}`, false},
	{"member without value", `{"a": {"b"}}`, false},
	{"trailing comma in an object", `{"a": {"b": 1,}}`, false},
	{"array closed as an object", `{"a": [1}}`, false},
	{"object closed as an array", `{"a": {]}`, false},
	{"object closes the array", `{"a": [}`, false},
	{"unclosed nesting", `{"a": [[[`, false},
	{"object closed as an array at the top", `{"a": 1]`, false},
	{"garbage after nesting", `{"a": [[]]]}`, false},
	{"value without key", `{1}`, false},
	{"NUL after", "{}\x00", false},
}

func TestDecodeValues(t *testing.T) {
	for _, c := range splitCases {
		t.Run(c.name, func(t *testing.T) {
			data := []byte(c.data)
			_, fast := splitValues(data)
			if fast != c.fast {
				t.Errorf("splitValues took it: %v, want %v", fast, c.fast)
			}
			checkLikeUnmarshal(t, data)
		})
	}
}

// checkLikeUnmarshal fails t unless splitValues and decodeValues give for
// data what json.Unmarshal gives: the same map, byte for byte, or when it
// fails, a failure for decodeValues and no map from splitValues.
func checkLikeUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	wantErr := json.Unmarshal(data, &want)

	split, fast := splitValues(bytes.Clone(data))
	switch {
	case fast && wantErr != nil:
		t.Fatalf("splitValues(%q) took what json.Unmarshal rejects (%v): %q", data, wantErr, split)
	case fast:
		checkSameValues(t, "splitValues", data, split, want)
		// The values share one buffer: each must end where its room does.
		for k, v := range split {
			if cap(v) != len(v) {
				t.Fatalf("splitValues(%q): value of %q has room for %d more bytes: an append would overwrite what follows it", data, k, cap(v)-len(v))
			}
		}
	}

	got, err := decodeValues(bytes.Clone(data))
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("decodeValues(%q) = %q, want json.Unmarshal's error %v", data, got, wantErr)
	case wantErr == nil && err != nil:
		t.Fatalf("decodeValues(%q): %v, want json.Unmarshal's %q", data, err, want)
	case err == nil:
		checkSameValues(t, "decodeValues", data, got, want)
	}
}

func checkSameValues(t *testing.T, fn string, data []byte, got, want map[string]json.RawMessage) {
	t.Helper()
	if (got == nil) != (want == nil) || !maps.EqualFunc(got, want, sameBytes) {
		t.Fatalf("%s(%q) = %q, want json.Unmarshal's %q", fn, data, got, want)
	}
}

// FuzzSplitValues checks that decodeValues, and its fast path splitValues,
// agree with json.Unmarshal into a map[string]json.RawMessage on every
// input: the same values byte for byte where it succeeds, a failure where
// it fails.
func FuzzSplitValues(f *testing.F) {
	for _, c := range splitCases {
		f.Add([]byte(c.data))
	}
	for _, c := range benchData {
		f.Add([]byte(c.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLikeUnmarshal(t, data)
	})
}

// TestScanRecordValues checks scanRecord on rows as pgx receives them in
// the formats it asks for (jsonb as text, the rest binary), all binary, and
// all text: the values decode, they are a copy of the row's buffer
// (which the connection reuses for the next row), and values that are not
// a JSON object are ErrCorrupt.
func TestScanRecordValues(t *testing.T) {
	for _, format := range []int16{-1, pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
		row := loadRowFormat(t, benchData[1].data, format)
		rec, err := scanRecord(row, true)
		if err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(benchData[1].data), &want); err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(rec.Values, want, sameBytes) {
			t.Fatalf("format %d: values %q, want %q", format, rec.Values, want)
		}
		if rec.UserAgent != "Go-http-client/1.1" || rec.IP != "127.0.0.1" || rec.UserID != "" || !rec.Persistent || rec.Created.IsZero() || rec.LoadedAt.IsZero() {
			t.Fatalf("format %d: metadata %+v", format, rec)
		}
		for i := range row.values[0] {
			row.values[0][i] = 'x' // as the connection reading the next row over it
		}
		if !maps.EqualFunc(rec.Values, want, sameBytes) {
			t.Fatalf("format %d: values changed with the row's buffer: %q", format, rec.Values)
		}

		for _, bad := range []string{`[1]`, `"text"`, `{"a": 1} {}`} {
			_, err := scanRecord(loadRowFormat(t, bad, format), true)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("format %d: data %s: error %v, want ErrCorrupt", format, bad, err)
			}
		}
	}
}

// BenchmarkDecodeValues compares decodeValues with the json.Unmarshal it
// replaces in scanRecord.
func BenchmarkDecodeValues(b *testing.B) {
	for _, c := range benchData {
		data := []byte(c.data)
		b.Run(c.name+"/unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var values map[string]json.RawMessage
				if err := json.Unmarshal(data, &values); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/split", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeValues(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sameBytes(a, b json.RawMessage) bool { return bytes.Equal(a, b) }
