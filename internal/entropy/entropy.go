// Package entropy estimates how many guesses a secret would cost an
// attacker who knows how people make up secrets, in the manner of zxcvbn
// but much shorter: it reads the secret as a sequence of patterns (a
// character repeated, a block repeated, an alphabetical or numerical
// sequence, a stretch of a keyboard row, a word from the placeholders and
// passwords that documentation and tutorials spread) and random
// characters, and takes the cheapest reading.
//
// A secret is then worth the bits of its cheapest reading, not of its
// length: "abcdefghijklmnopqrstuvwxyz0123456789" is 36 characters but about
// a dozen bits, and 43 characters of random base64url are about 250.
package entropy

import (
	"math"
	"slices"
	"strings"
	"unicode"
)

// maxRunes bounds the work on one secret; characters past it add nothing.
// Nobody types 256 characters of patterns and then randomness, and a
// secret whose first 256 characters are random is strong anyway.
const maxRunes = 256

// Estimate is what Of found in a secret.
type Estimate struct {
	// Bits is log2 of the guesses needed to find the secret by trying
	// patterns first.
	Bits float64
	// Patterns names, once each, the kinds of pattern in the cheapest
	// reading ("a repeated block", "a keyboard row"), in the order they
	// appear; empty when the secret reads as random characters.
	Patterns []string
}

// Of estimates the entropy of secret.
func Of(secret string) Estimate {
	runes := []rune(secret)
	if len(runes) > maxRunes {
		runes = runes[:maxRunes]
	}
	e := &estimator{charBits: math.Log2(float64(cardinality(runes))), blocks: map[string]float64{}}
	bits, kinds := e.cheapest(runes)
	return Estimate{Bits: bits, Patterns: kinds}
}

// cardinality is the size of the alphabet a brute-force attacker would
// try for runes: the union of the classes of the characters it holds.
func cardinality(runes []rune) int {
	var lower, upper, digit, symbol, other bool
	for _, r := range runes {
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		case r < 0x80:
			symbol = true
		default:
			other = true
		}
	}
	n := 0
	for _, class := range []struct {
		present bool
		size    int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {symbol, 33}, {other, 100}} {
		if class.present {
			n += class.size
		}
	}
	return max(n, 1)
}

// match is one pattern found at runes[start:end].
type match struct {
	start, end int
	bits       float64
	kind       string
}

type estimator struct {
	// charBits is the cost of one character read as random.
	charBits float64
	// blocks memoizes the cost of blocks that repeat.
	blocks map[string]float64
}

// cheapest returns the bits of the cheapest reading of runes and the kinds
// of pattern it uses.
func (e *estimator) cheapest(runes []rune) (float64, []string) {
	n := len(runes)
	ending := make([][]match, n+1)
	for _, m := range e.matches(runes) {
		ending[m.end] = append(ending[m.end], m)
	}
	best := make([]float64, n+1)
	via := make([]*match, n+1)
	for j := 1; j <= n; j++ {
		best[j], via[j] = best[j-1]+e.charBits, nil
		for i := range ending[j] {
			m := &ending[j][i]
			if b := best[m.start] + m.bits; b < best[j] {
				best[j], via[j] = b, m
			}
		}
	}
	var kinds []string
	for j := n; j > 0; {
		m := via[j]
		if m == nil {
			j--
			continue
		}
		if !slices.Contains(kinds, m.kind) {
			kinds = append(kinds, m.kind)
		}
		j = m.start
	}
	slices.Reverse(kinds)
	return best[n], kinds
}

// matches lists every pattern found in runes.
func (e *estimator) matches(runes []rune) []match {
	var ms []match
	ms = append(ms, e.repeats(runes)...)
	ms = append(ms, sequences(runes)...)
	ms = append(ms, keyboardRows(runes)...)
	ms = append(ms, words(runes)...)
	return ms
}

// repeats finds blocks repeated back to back, "aaaa" and "abcabcabc" alike:
// a block costs its own cheapest reading plus the number of copies.
func (e *estimator) repeats(runes []rune) []match {
	n := len(runes)
	var ms []match
	for size := 1; 2*size <= n; size++ {
		for i := 0; i+2*size <= n; i++ {
			if i >= size && slices.Equal(runes[i-size:i], runes[i:i+size]) {
				continue // inside a repetition found from its start
			}
			copies := 1
			for i+(copies+1)*size <= n && slices.Equal(runes[i:i+size], runes[i+copies*size:i+(copies+1)*size]) {
				copies++
			}
			if copies < 2 {
				continue
			}
			block := e.blockBits(runes[i : i+size])
			kind := "a repeated block"
			if size == 1 {
				kind = "a run of one character"
			}
			for k := 2; k <= copies; k++ {
				ms = append(ms, match{start: i, end: i + k*size, bits: block + math.Log2(float64(k)), kind: kind})
			}
		}
	}
	return ms
}

func (e *estimator) blockBits(block []rune) float64 {
	key := string(block)
	if bits, ok := e.blocks[key]; ok {
		return bits
	}
	bits, _ := e.cheapest(block)
	e.blocks[key] = bits
	return bits
}

// sequences finds runs of three or more letters or digits that step up or
// down by one ("abcdef", "9876"). The common starts (a, z, 0, 1, 9) are
// worth a bit or two; any other costs a pick from the class.
func sequences(runes []rune) []match {
	class := func(r rune) int {
		switch {
		case r >= 'a' && r <= 'z':
			return 26
		case r >= 'A' && r <= 'Z':
			return 26
		case r >= '0' && r <= '9':
			return 10
		}
		return 0
	}
	var ms []match
	for i := 0; i+2 < len(runes); i++ {
		size := class(runes[i])
		if size == 0 {
			continue
		}
		for _, step := range []rune{1, -1} {
			end := i + 1
			for end < len(runes) && runes[end]-runes[end-1] == step && class(runes[end]) == size && sameCase(runes[end], runes[i]) {
				end++
			}
			if end-i < 3 {
				continue
			}
			start := math.Log2(float64(size))
			if strings.ContainsRune("aAzZ019", runes[i]) {
				start = 1
			}
			if step < 0 {
				start++
			}
			for j := i + 3; j <= end; j++ {
				ms = append(ms, match{start: i, end: j, bits: start + math.Log2(float64(j-i)), kind: "an alphabetical or numerical sequence"})
			}
		}
	}
	return ms
}

func sameCase(a, b rune) bool { return unicode.IsUpper(a) == unicode.IsUpper(b) }

// keyboardRowsUS are the rows of a US keyboard, unshifted and shifted,
// letters in lower case: case costs bits of its own (caseBits).
var keyboardRowsUS = []string{
	"`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./",
	"~!@#$%^&*()_+", "qwertyuiop{}|", "asdfghjkl:\"", "zxcvbnm<>?",
}

// keyboardStarts is how many places a row stretch can start, in either
// direction.
var keyboardStarts = func() int {
	n := 0
	for _, row := range keyboardRowsUS {
		n += 2 * len(row)
	}
	return n
}()

// keyboardRows finds stretches of three or more adjacent keys of one
// keyboard row, forwards or backwards ("qwerty", "lkjh", "!@#$").
func keyboardRows(runes []rune) []match {
	lower := make([]rune, len(runes))
	for i, r := range runes {
		lower[i] = unicode.ToLower(r)
	}
	var ms []match
	for _, row := range keyboardRowsUS {
		for _, r := range []string{row, reverse(row)} {
			for i := range lower {
				length := 0
				pos := strings.IndexRune(r, lower[i])
				for pos >= 0 && i+length < len(lower) && pos+length < len(r) && rune(r[pos+length]) == lower[i+length] {
					length++
				}
				for j := i + 3; j <= i+length; j++ {
					bits := math.Log2(float64(keyboardStarts)) + math.Log2(float64(j-i)) + caseBits(runes[i:j])
					ms = append(ms, match{start: i, end: j, bits: bits, kind: "a keyboard row"})
				}
			}
		}
	}
	return ms
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// caseBits is what the capitalisation of runes costs beyond all lower
// case: nothing, one bit for a capital first letter or all capitals, else
// a bit per letter.
func caseBits(runes []rune) float64 {
	upper, letters, firstUpper := 0, 0, false
	for i, r := range runes {
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsUpper(r) {
				upper++
				firstUpper = firstUpper || i == 0
			}
		}
	}
	switch {
	case upper == 0:
		return 0
	case upper == letters || upper == 1 && firstUpper:
		return 1
	}
	return float64(letters)
}

// leet lists the characters written for a letter in "l33t" spelling.
var leet = map[rune]string{
	'a': "4@", 'b': "8", 'c': "(<", 'e': "3", 'g': "69", 'i': "1!|", 'l': "1|7",
	'o': "0", 's': "$5", 't': "7+", 'z': "2",
}

// words finds dictionary words, forwards or backwards, in any case and
// l33t spelling. A word costs a pick from the dictionary, its case and a
// bit per substituted letter.
func words(runes []rune) []match {
	pick := math.Log2(float64(len(dictionary)))
	var ms []match
	for i := range runes {
		for _, w := range dictionary {
			for reversed, spelling := range []string{w, reverse(w)} {
				if reversed == 1 && spelling == w {
					continue
				}
				end, subs := spelledAt(runes, i, spelling)
				if end < 0 {
					continue
				}
				bits := pick + caseBits(runes[i:end]) + float64(subs) + float64(reversed)
				ms = append(ms, match{start: i, end: end, bits: bits, kind: "a common word or placeholder"})
			}
		}
	}
	return ms
}

// spelledAt returns where word ends if runes spell it from i, and how
// many of its letters are l33t substitutions, or -1.
func spelledAt(runes []rune, i int, word string) (end, subs int) {
	j := i
	for _, want := range word {
		if j >= len(runes) {
			return -1, 0
		}
		got := unicode.ToLower(runes[j])
		switch {
		case got == want:
		case strings.ContainsRune(leet[want], runes[j]):
			subs++
		default:
			return -1, 0
		}
		j++
	}
	return j, subs
}

// dictionary holds words that secrets copied from documentation, tutorials
// and habit are made of: placeholders, "secret" and its neighbours, the
// most common passwords, and the filler words that join them ("this is my
// very long secret"). Words shorter than three letters are left out:
// as cheap as random characters, they would only slow the search.
var dictionary = []string{
	"changeme", "change", "replace", "insert", "your", "here", "mine", "this", "that", "the",
	"and", "for", "with", "not", "very", "long", "strong", "random", "secure", "string",
	"secret", "secrets", "session", "sessions", "cookie", "cookies", "token", "sign", "signing", "signed",
	"key", "keys", "pass", "password", "passwd", "passphrase", "default", "example", "sample", "demo",
	"test", "testing", "dev", "development", "prod", "production", "staging", "local", "app", "application",
	"admin", "administrator", "root", "user", "login", "super", "supersecret", "mysecret", "keyboard", "cat",
	"dog", "express", "node", "server", "web", "site", "api", "jwt", "auth", "hmac",
	"qwerty", "letmein", "welcome", "monkey", "dragon", "master", "shadow", "sunshine", "princess", "football",
	"baseball", "iloveyou", "trustno1", "hello", "world", "foo", "bar", "baz", "abc", "xyz",
	"temp", "tmp", "todo", "fixme", "none", "null", "empty", "value", "config", "env",
	"smart", "scheduler", "company", "team", "project", "guess", "nobody", "will", "can", "never",
	"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
	"red", "blue", "green", "black", "white", "apple", "banana", "orange", "correct", "horse",
	"battery", "staple", "summer", "winter", "spring", "autumn", "january", "december", "love", "god",
}
