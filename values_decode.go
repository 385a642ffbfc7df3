package session

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// decodeValues decodes a session's values, stored as one JSON object, into
// a map of each value's JSON. It gives what json.Unmarshal into a
// map[string]json.RawMessage gives, errors included, but in most cases
// without it: splitValues walks the object once and hands out the values
// as subslices of data, which json.Unmarshal, validating the whole text
// and then decoding it a second time, copies one by one.
//
// The values share data's memory, so data must not be modified or reused
// afterwards: pass a buffer of the caller's own. They are capped at their
// own length, so that an append to one never writes into the next.
func decodeValues(data []byte) (map[string]json.RawMessage, error) {
	if values, ok := splitValues(data); ok {
		return values, nil
	}
	// Anything splitValues does not take, json.Unmarshal decides: it either
	// accepts it (a key with an escape, a JSON null) or says what is wrong.
	var values map[string]json.RawMessage
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, err
	}
	return values, nil
}

// maxSplitDepth is how deeply splitValues follows arrays and objects
// inside a value; deeper values go to json.Unmarshal.
const maxSplitDepth = 64

// splitEntry locates one key (without its quotes) and its value in the
// text splitValues splits.
type splitEntry struct{ keyStart, keyEnd, valueStart, valueEnd int }

// splitValues splits data, a JSON object, into its members, and reports
// false for anything it does not take: whatever is not an object of valid
// JSON (what json.Unmarshal rejects), a key json.Unmarshal would change
// while unquoting it (one with an escape, or invalid UTF-8), or values
// nested deeper than maxSplitDepth. A false is never a verdict: the caller
// asks json.Unmarshal. Members are taken in order, so a key repeated keeps
// its last value, as json.Unmarshal keeps it.
func splitValues(data []byte) (map[string]json.RawMessage, bool) {
	var buf [16]splitEntry
	entries := buf[:0]
	keyBytes := 0
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		if skipSpace(data, i+1) != len(data) {
			return nil, false
		}
		return map[string]json.RawMessage{}, true
	}
	for {
		keyEnd, ok := scanKey(data, i)
		if !ok {
			return nil, false
		}
		e := splitEntry{keyStart: i + 1, keyEnd: keyEnd - 1}
		i = skipSpace(data, keyEnd)
		if i == len(data) || data[i] != ':' {
			return nil, false
		}
		e.valueStart = skipSpace(data, i+1)
		if e.valueEnd, ok = skipValue(data, e.valueStart); !ok {
			return nil, false
		}
		entries = append(entries, e)
		keyBytes += e.keyEnd - e.keyStart
		i = skipSpace(data, e.valueEnd)
		if i == len(data) {
			return nil, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return nil, false
		}
		i = skipSpace(data, i+1)
	}
	if skipSpace(data, i+1) != len(data) {
		return nil, false
	}
	// One string holds every key, so that a session of many values costs
	// one allocation for its keys rather than one each.
	var b strings.Builder
	b.Grow(keyBytes)
	for _, e := range entries {
		b.Write(data[e.keyStart:e.keyEnd])
	}
	keys := b.String()
	values := make(map[string]json.RawMessage, len(entries))
	for _, e := range entries {
		n := e.keyEnd - e.keyStart
		values[keys[:n]] = data[e.valueStart:e.valueEnd:e.valueEnd]
		keys = keys[n:]
	}
	return values, true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace, or len(data).
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanKey checks the string starting at data[i] as a key that unquotes to
// its bytes as they are (no escape, valid UTF-8), and returns the index
// after its closing quote.
func scanKey(data []byte, i int) (end int, ok bool) {
	if i == len(data) || data[i] != '"' {
		return 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(data[i+1:j]) {
				return 0, false // json.Unmarshal would replace the bad bytes
			}
			return j + 1, true
		case c == '\\' || c < 0x20:
			return 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, false
}

// skipString checks the JSON string starting at data[i] (its opening
// quote) and returns the index after its closing quote. Bytes outside
// ASCII are taken as they are, as json.Unmarshal takes them into a
// json.RawMessage.
func skipString(data []byte, i int) (end int, ok bool) {
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			j++
			if j == len(data) {
				return 0, false
			}
			switch data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(data) {
					return 0, false
				}
				for _, h := range data[j+1 : j+5] {
					if !isHex(h) {
						return 0, false
					}
				}
				j += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// skipNumber checks the JSON number starting at data[i] and returns the
// index after it.
func skipNumber(data []byte, i int) (end int, ok bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i == len(data):
		return 0, false
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

// skipLiteral checks that data at i holds word, and returns the index
// after it.
func skipLiteral(data []byte, i int, word string) (end int, ok bool) {
	if len(data)-i < len(word) || string(data[i:i+len(word)]) != word {
		return 0, false
	}
	return i + len(word), true
}

// skipValue checks the JSON value starting at data[i] and returns the index
// after it. It checks what json.Unmarshal's scanner checks, and follows
// arrays and objects maxSplitDepth deep at most.
func skipValue(data []byte, i int) (end int, ok bool) {
	// inObject has a bit per array or object open, innermost lowest: set
	// for an object.
	var inObject uint64
	depth := 0
	for {
		// A value starts at i.
		if i == len(data) {
			return 0, false
		}
		switch c := data[i]; {
		case c == '"':
			i, ok = skipString(data, i)
		case c == '{' || c == '[':
			if depth == maxSplitDepth {
				return 0, false
			}
			depth++
			inObject <<= 1
			closing := byte(']')
			if c == '{' {
				inObject |= 1
				closing = '}'
			}
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == closing {
				depth--
				inObject >>= 1
				i, ok = i+1, true
				break
			}
			if c == '{' {
				if i, ok = skipMemberName(data, i); !ok {
					return 0, false
				}
			}
			continue
		case c == '-' || '0' <= c && c <= '9':
			i, ok = skipNumber(data, i)
		case c == 't':
			i, ok = skipLiteral(data, i, "true")
		case c == 'f':
			i, ok = skipLiteral(data, i, "false")
		case c == 'n':
			i, ok = skipLiteral(data, i, "null")
		default:
			return 0, false
		}
		if !ok {
			return 0, false
		}
		// A value ended at i: close what it ends, until another value
		// starts or the outermost one is done.
		for {
			if depth == 0 {
				return i, true
			}
			i = skipSpace(data, i)
			if i == len(data) {
				return 0, false
			}
			object := inObject&1 == 1
			if c := data[i]; c == '}' && object || c == ']' && !object {
				depth--
				inObject >>= 1
				i++
				continue
			}
			if data[i] != ',' {
				return 0, false
			}
			i = skipSpace(data, i+1)
			if object {
				if i, ok = skipMemberName(data, i); !ok {
					return 0, false
				}
			}
			break
		}
	}
}

// skipMemberName checks an object member's name and colon starting at
// data[i], and returns the index of its value.
func skipMemberName(data []byte, i int) (end int, ok bool) {
	if i == len(data) || data[i] != '"' {
		return 0, false
	}
	if i, ok = skipString(data, i); !ok {
		return 0, false
	}
	i = skipSpace(data, i)
	if i == len(data) || data[i] != ':' {
		return 0, false
	}
	return skipSpace(data, i+1), true
}
