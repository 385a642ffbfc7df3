package nodetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// ConnectSID is the connect.sid value express-session sets for sid signed
// with secret: "s:" + sid + "." + the unpadded base64 of
// HMAC-SHA256(secret, sid), as cookie-signature signs, URL-encoded as
// encodeURIComponent encodes such a value (sids of express's uid-safe need
// nothing else escaped). Tests use it for rows they write themselves,
// written apart from the library's code so that it checks that code.
func ConnectSID(sid, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(sid))
	signed := "s:" + sid + "." + strings.TrimRight(base64.StdEncoding.EncodeToString(mac.Sum(nil)), "=")
	return strings.NewReplacer(":", "%3A", "/", "%2F", "+", "%2B").Replace(signed)
}
