package main

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
)

// user is a demo account. A real app keeps these in its database; the
// example ships two so it runs with nothing set up.
type user struct {
	ID   string
	Name string
	// passwordHash is "$pbkdf2-sha256$<iterations>$<salt>$<key>", salt and
	// key in unpadded base64. The iteration count travels with the hash so
	// it can be raised later without invalidating stored passwords.
	passwordHash string
}

// demoUsers are the accounts the sign-in page lists: ada/lovelace and
// grace/hopper. 600,000 iterations of PBKDF2-HMAC-SHA256 is OWASP's 2023
// recommendation.
var demoUsers = map[string]user{
	"ada":   {ID: "ada", Name: "Ada Lovelace", passwordHash: "$pbkdf2-sha256$600000$MN5BykNjDAXCgouF1wSPSA$JX29qahP5F9dfm6a1kHyYITi486jI9PP9BomOmg/trE"},
	"grace": {ID: "grace", Name: "Grace Hopper", passwordHash: "$pbkdf2-sha256$600000$SCa03yUW1yCKonVfb+gAuQ$fVtarilhSpr9HlEVXVl83coPaafdAIYstZrpb+FFGx0"},
}

// dummyHash is checked against when the user name is unknown, so that a
// wrong name takes as long as a wrong password and response times do not
// reveal which accounts exist.
const dummyHash = "$pbkdf2-sha256$600000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// authenticate returns the user whose name and password these are.
func authenticate(users map[string]user, name, password string) (user, bool) {
	u, known := users[strings.ToLower(strings.TrimSpace(name))]
	hash := u.passwordHash
	if !known {
		hash = dummyHash
	}
	ok := checkPassword(hash, password)
	return u, known && ok
}

// checkPassword reports whether password matches the encoded hash,
// comparing in constant time.
func checkPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "pbkdf2-sha256" {
		return false
	}
	iterations, err := strconv.Atoi(parts[2])
	salt, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	want, err3 := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || err2 != nil || err3 != nil || iterations < 1 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iterations, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}
