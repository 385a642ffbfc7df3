package session_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/smartscheduler/session"
)

func TestBadCookies(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	ts := startServer(t, serverSetup{cfg: session.Config{Secret: secret}}, appHandler())
	stranger := startServer(t, serverSetup{}, appHandler())
	otherName := startServer(t, serverSetup{cfg: session.Config{Secret: secret, CookieName: "other"}, store: ts.store, clock: ts.clock}, appHandler())

	valid := issue(t, ts, "session")
	tampered := func() string {
		b, err := base64.URLEncoding.DecodeString(valid)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1 // the last byte of the MAC
		return base64.URLEncoding.EncodeToString(b)
	}()
	destroyed := issue(t, ts, "session")
	if resp, _ := rawCookieGet(t, ts, "/destroy", "session="+destroyed); resp.StatusCode != http.StatusOK {
		t.Fatalf("destroy: status %d", resp.StatusCode)
	}
	junk := "c2Vzc2lvbg"

	tests := []struct {
		name      string
		header    string
		wantBody  string // color read from the session
		wantLoads int
	}{
		{name: "valid", header: "session=" + valid, wantBody: "blue", wantLoads: 1},
		{name: "tampered MAC", header: "session=" + tampered},
		{name: "signed with another secret", header: "session=" + issue(t, stranger, "session")},
		{name: "signed for another cookie name", header: "session=" + issue(t, otherName, "other")},
		{name: "truncated", header: "session=" + valid[:len(valid)/2]},
		{name: "one byte short", header: "session=" + valid[:len(valid)-1]},
		{name: "empty", header: "session="},
		{name: "not base64", header: "session=%%%***!!!"},
		{name: "10 KB", header: "session=" + strings.Repeat("A", 10<<10)},
		{name: "junk then valid", header: "session=" + junk + "; session=" + valid, wantBody: "blue", wantLoads: 1},
		{name: "valid then junk", header: "session=" + valid + "; session=" + junk, wantBody: "blue", wantLoads: 1},
		{name: "two junk", header: "session=" + junk + "; session=" + tampered},
		{name: "too many junk before valid", header: strings.Repeat("session="+junk+"; ", 10) + "session=" + valid},
		{name: "session destroyed", header: "session=" + destroyed, wantLoads: 1},
		{name: "valid value under another name", header: "sid=" + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case counts the shared store's calls.
			ts.store.counts()
			resp, body := rawCookieGet(t, ts, "/get?key=color", tt.header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if body != tt.wantBody {
				t.Errorf("color = %q, want %q", body, tt.wantBody)
			}
			if got := ts.store.counts(); got["Load"] != tt.wantLoads || len(got) > 1 {
				t.Errorf("store calls %v, want %d Load and nothing else", got, tt.wantLoads)
			}
			// A session cookie that names a dead session, or that does not
			// verify at all, is cleared so the browser stops sending it
			// (issue 11: before, only the first kind was); a request with
			// a live session, or with no session cookie, sets nothing.
			if tt.wantBody == "" && strings.HasPrefix(tt.header, "session=") {
				if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge >= 0 {
					t.Errorf("a read with a cookie that leads nowhere set %q; want the cookie cleared", resp.Header.Values("Set-Cookie"))
				}
			} else if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("a read set %q", sc)
			}

			resp, body = rawCookieGet(t, ts, "/visit", tt.header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("write: status %d, want 200", resp.StatusCode)
			}
			if tt.wantBody == "" && body != "1" {
				t.Errorf("write: visits = %s, want 1 in a fresh session", body)
			}
		})
	}
}
