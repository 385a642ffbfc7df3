package session

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestExpressCookieUnreadWithoutImport: without SESSION_EXPRESS_TABLE a
// request's connect.sid, however well signed, is never parsed.
func TestExpressCookieUnreadWithoutImport(t *testing.T) {
	t.Parallel()
	const secret = "keyboard cat"
	m, err := New(t.Context(), Config{Secret: secret}, WithStore(newMemoryStore(time.Now)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.expressCookie != nil || m.importer != nil {
		t.Fatal("the import is set up without SESSION_EXPRESS_TABLE")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "connect.sid="+encodeURIComponent(signExpressCookie("sid", secret)))
	rq := &perRequest{}
	m.begin(r, rq)
	if rq.state.presented.legacy != "" {
		t.Errorf("presented.legacy = %q without the import", rq.state.presented.legacy)
	}
}
