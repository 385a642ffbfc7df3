package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

func TestRenew(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/set?color=blue")
	old := jarCookie(t, c, ts.URL, "session")

	resp, _ := fetchOK(t, c, ts.URL+"/login?user=ada")
	renewed := setCookie(resp, "session")
	if renewed == nil || renewed.Value == old || renewed.MaxAge <= 0 {
		t.Fatalf("Renew set cookie %v; want a new, live cookie", renewed)
	}

	if _, body := sessionOnlyCookie(t, ts, "/get?key=color", old); body != "" {
		t.Errorf("replaying the pre-renewal cookie read %q, want a fresh session", body)
	}
	if _, body := sessionOnlyCookie(t, ts, "/whoami", old); body != "" {
		t.Errorf("replaying the pre-renewal cookie is signed in as %q", body)
	}
	if _, body := fetchOK(t, c, ts.URL+"/get?key=color"); body != "blue" {
		t.Errorf("renewed session lost its data: color = %q, want blue", body)
	}
	if _, body := fetchOK(t, c, ts.URL+"/whoami"); body != "ada" {
		t.Errorf("renewed session user = %q, want ada", body)
	}
	if got := session.MemoryRecords(ts.store.Store); got != 1 {
		t.Errorf("store holds %d records after renewal, want 1", got)
	}
}

func TestDestroy(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/set?color=blue")
	old := jarCookie(t, c, ts.URL, "session")

	resp, _ := fetchOK(t, c, ts.URL+"/destroy")
	ck := setCookie(resp, "session")
	if ck == nil || ck.MaxAge >= 0 || !ck.Expires.Before(time.Now()) || ck.Value != "" {
		t.Fatalf("Destroy's response set %q; want the cookie cleared", resp.Header.Values("Set-Cookie"))
	}
	if jarCookie(t, c, ts.URL, "session") != "" {
		t.Error("the browser still holds the cookie after Destroy")
	}
	if _, body := sessionOnlyCookie(t, ts, "/get?key=color", old); body != "" {
		t.Errorf("replaying the destroyed session's cookie read %q, want a fresh session", body)
	}
	if got := session.MemoryRecords(ts.store.Store); got != 0 {
		t.Errorf("store holds %d records after Destroy, want 0", got)
	}
}

func TestDestroyThenFlash(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/logout", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.Destroy(), s.AddFlash("signed out"))
	}))
	mux.HandleFunc("/flashes", func(w http.ResponseWriter, r *http.Request) {
		flashes, err := session.FromContext(r.Context()).Flashes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, strings.Join(flashes, "|"))
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/login?user=ada")
	old := jarCookie(t, c, ts.URL, "session")

	resp, _ := fetchOK(t, c, ts.URL+"/logout")
	cookies := resp.Header.Values("Set-Cookie")
	ck := setCookie(resp, "session")
	if len(cookies) != 1 || ck.Value == "" || ck.Value == old || ck.MaxAge <= 0 {
		t.Fatalf("Destroy then AddFlash set %q; want one new session cookie", cookies)
	}
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "" {
		t.Errorf("new session after logout belongs to %q", who)
	}
	if _, flashes := fetchOK(t, c, ts.URL+"/flashes"); flashes != "signed out" {
		t.Errorf("flashes = %q, want the logout message", flashes)
	}
	if _, body := sessionOnlyCookie(t, ts, "/whoami", old); body != "" {
		t.Errorf("old cookie still signed in as %q", body)
	}
}

func TestNoLostUpdates(t *testing.T) {
	t.Parallel()
	g := newGate("a", "b")
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/slow", g.handler())
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")
	ts.store.counts()

	done := map[string]chan struct{}{}
	for _, name := range []string{"a", "b"} {
		finished := make(chan struct{})
		done[name] = finished
		go func() {
			defer close(finished)
			resp, err := c.Get(ts.URL + "/slow?name=" + name)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("request %s: status %d", name, resp.StatusCode)
			}
		}()
	}
	<-g.loaded
	<-g.loaded // both requests hold version 1
	close(g.release["a"])
	<-done["a"]
	close(g.release["b"])
	<-done["b"]

	for _, key := range []string{"a", "b"} {
		if _, body := fetchOK(t, c, ts.URL+"/get?key="+key); body != "set by "+key {
			t.Errorf("%s = %q after overlapping writes, want it kept", key, body)
		}
	}
	if _, body := fetchOK(t, c, ts.URL+"/read"); body != "1" {
		t.Errorf("visits = %s, want the value both requests started from", body)
	}
}

// TestNoResurrectionAfterDestroy holds a request that loaded the session
// while another request signs out: the held request's save must not bring
// the session back. Since issue 11 its write is not dropped either: it goes
// to a new, anonymous session holding only that write, whose cookie the
// response sets (before, the write was lost and the cookie cleared).
func TestNoResurrectionAfterDestroy(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, start startFunc) {
		g := newGate("late")
		mux := http.NewServeMux()
		mux.Handle("/", appHandler())
		mux.Handle("/slow", g.handler())
		ts, records := start(mux)
		c := ts.client(t)
		fetchOK(t, c, ts.URL+"/login?user=ada")
		old := jarCookie(t, c, ts.URL, "session")

		type result struct {
			resp *http.Response
			err  error
		}
		late := make(chan result, 1)
		go func() {
			resp, err := c.Get(ts.URL + "/slow?name=late")
			if err == nil {
				resp.Body.Close()
			}
			late <- result{resp, err}
		}()
		<-g.loaded
		fetchOK(t, c, ts.URL+"/destroy")
		close(g.release["late"])
		res := <-late
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.resp.StatusCode != http.StatusOK {
			t.Errorf("in-flight request: status %d, want 200", res.resp.StatusCode)
		}
		ck := setCookie(res.resp, "session")
		if ck == nil || ck.MaxAge <= 0 || ck.Value == old {
			t.Fatalf("in-flight request's response set %q; want a new session's cookie", res.resp.Header.Values("Set-Cookie"))
		}
		if got := records(); got != 1 {
			t.Errorf("store holds %d records; want only the in-flight request's new session", got)
		}
		if _, body := sessionOnlyCookie(t, ts, "/get?key=late", ck.Value); body != "set by late" {
			t.Errorf("the new session holds late = %q; want the in-flight request's write", body)
		}
		if _, body := sessionOnlyCookie(t, ts, "/whoami", ck.Value); body != "" {
			t.Errorf("the new session belongs to %q; want nobody: a racing write must not sign the user back in", body)
		}
		for _, path := range []string{"/whoami", "/get?key=late"} {
			if _, body := sessionOnlyCookie(t, ts, path, old); body != "" {
				t.Errorf("old cookie %s = %q; the destroyed session came back", path, body)
			}
		}
	})
}

func TestUpdateIsAtomic(t *testing.T) {
	t.Parallel()
	const requests = 16
	var loaded sync.WaitGroup
	loaded.Add(requests)
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/inc", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := s.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		loaded.Done()
		loaded.Wait() // every request holds the same version before any updates
		n, err := session.Update(s, "counter", func(n int, ok bool) (int, error) { return n + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/counter", func(w http.ResponseWriter, r *http.Request) {
		n, _ := session.Value[int](session.FromContext(r.Context()), "counter")
		fmt.Fprint(w, n)
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")

	results := make(chan string, requests)
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			resp, err := c.Get(ts.URL + "/inc")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
			results <- string(body)
		})
	}
	wg.Wait()
	close(results)
	var seen []int
	for r := range results {
		n, _ := strconv.Atoi(r)
		seen = append(seen, n)
	}
	slices.Sort(seen)
	for i, n := range seen {
		if n != i+1 {
			t.Fatalf("Update results %v, want each of 1..%d once", seen, requests)
		}
	}
	if _, body := fetchOK(t, c, ts.URL+"/counter"); body != strconv.Itoa(requests) {
		t.Errorf("counter = %s after %d concurrent increments", body, requests)
	}
}

func TestValueRoundTrips(t *testing.T) {
	t.Parallel()
	type profile struct {
		Name  string
		Langs []string
	}
	want := profile{Name: "Ada", Langs: []string{"go", "sql"}}
	wantMap := map[string]int{"a": 1, "b": 2}
	mux := http.NewServeMux()
	mux.Handle("/put", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.Set("n", 42), s.Set("profile", want), s.Set("m", wantMap), s.Set("s", "text"), s.Set("f", 1.5))
	}))
	mux.Handle("/check", handlerFunc(func(s *session.Session, r *http.Request) error {
		var errs []error
		if n, err := session.Value[int](s, "n"); err != nil || n != 42 {
			errs = append(errs, fmt.Errorf("Value[int](n) = %v, %v; want 42", n, err))
		}
		if _, err := session.Value[any](s, "n"); err != nil {
			errs = append(errs, err)
		}
		if p, err := session.Value[profile](s, "profile"); err != nil || p.Name != want.Name || !slices.Equal(p.Langs, want.Langs) {
			errs = append(errs, fmt.Errorf("Value[profile] = %+v, %v; want %+v", p, err, want))
		}
		if m, err := session.Value[map[string]int](s, "m"); err != nil || fmt.Sprint(m) != fmt.Sprint(wantMap) {
			errs = append(errs, fmt.Errorf("Value[map] = %v, %v; want %v", m, err, wantMap))
		}
		if f, err := session.Value[float64](s, "f"); err != nil || f != 1.5 {
			errs = append(errs, fmt.Errorf("Value[float64] = %v, %v; want 1.5", f, err))
		}

		if _, err := session.Value[int](s, "missing"); !errors.Is(err, session.ErrNoValue) {
			errs = append(errs, fmt.Errorf("Value(missing) = %v, want ErrNoValue", err))
		}
		_, err := session.Value[int](s, "s")
		if err == nil || errors.Is(err, session.ErrNoValue) || !strings.Contains(err.Error(), `"s"`) {
			errs = append(errs, fmt.Errorf("Value[int] of a string = %v, want a decode error naming the key", err))
		}
		if str, err := session.Value[string](s, "s"); err != nil || str != "text" {
			errs = append(errs, fmt.Errorf("after a failed decode, Value[string](s) = %q, %v", str, err))
		}
		if n, err := session.Value[int](s, "n"); err != nil || n != 42 {
			errs = append(errs, fmt.Errorf("after a failed decode of another key, n = %v, %v", n, err))
		}
		if err := s.Set("bad", func() {}); err == nil {
			errs = append(errs, errors.New("Set of a func succeeded"))
		}
		return errors.Join(errs...)
	}))
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/put")
	fetchOK(t, c, ts.URL+"/check")
}

func TestDeletePopClearKeys(t *testing.T) {
	t.Parallel()
	keys := func(s *session.Session, want ...string) error {
		if got, err := s.Keys(); err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("Keys() = %q, %v, want %q", got, err, want)
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/fill", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.Set("zebra", 1), s.Set("apple", 2), s.Set("mango", 3), s.AddFlash("hello"))
	}))
	mux.Handle("/keys", handlerFunc(func(s *session.Session, r *http.Request) error {
		return keys(s, "apple", "mango", "zebra")
	}))
	mux.Handle("/delete", handlerFunc(func(s *session.Session, r *http.Request) error {
		if err := errors.Join(s.Delete("mango"), s.Delete("never-set")); err != nil {
			return err
		}
		return keys(s, "apple", "zebra")
	}))
	mux.Handle("/pop", handlerFunc(func(s *session.Session, r *http.Request) error {
		v, err := session.Pop[int](s, "apple")
		if err != nil || v != 2 {
			return fmt.Errorf("Pop(apple) = %v, %v; want 2", v, err)
		}
		if _, err := session.Pop[int](s, "apple"); !errors.Is(err, session.ErrNoValue) {
			return fmt.Errorf("second Pop(apple) = %v; want ErrNoValue", err)
		}
		return keys(s, "zebra")
	}))
	mux.Handle("/clear", handlerFunc(func(s *session.Session, r *http.Request) error {
		if err := s.SetUser("ada"); err != nil {
			return err
		}
		if err := s.Clear(); err != nil {
			return err
		}
		return keys(s)
	}))
	mux.Handle("/after-clear", handlerFunc(func(s *session.Session, r *http.Request) error {
		if user, err := s.UserID(); err != nil || user != "ada" {
			return fmt.Errorf("Clear dropped the user: %q, %v", user, err)
		}
		if f, err := s.Flashes(); err != nil || len(f) != 0 {
			return fmt.Errorf("flashes survived Clear: %q, %v", f, err)
		}
		return keys(s)
	}))
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	for _, path := range []string{"/fill", "/keys", "/delete", "/pop", "/clear", "/after-clear"} {
		fetchOK(t, c, ts.URL+path)
	}
}

func TestFlashesAcrossRedirect(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/save", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := errors.Join(s.AddFlash("saved"), s.AddFlash("twice")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/show", http.StatusSeeOther)
	})
	mux.HandleFunc("/show", func(w http.ResponseWriter, r *http.Request) {
		flashes, err := session.FromContext(r.Context()).Flashes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, strings.Join(flashes, "|"))
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	if _, body := fetchOK(t, c, ts.URL+"/save"); body != "saved|twice" {
		t.Errorf("after the redirect, flashes = %q, want saved|twice", body)
	}
	if _, body := fetchOK(t, c, ts.URL+"/show"); body != "" {
		t.Errorf("flashes shown twice: %q", body)
	}
}

func TestRememberMe(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/forget", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.Set("x", 1), s.SetRememberMe(false))
	}))
	mux.Handle("/remember", handlerFunc(func(s *session.Session, r *http.Request) error {
		return s.SetRememberMe(true)
	}))
	ts := startServer(t, serverSetup{}, mux)

	t.Run("new session", func(t *testing.T) {
		c := ts.client(t)
		resp, _ := fetchOK(t, c, ts.URL+"/forget")
		ck := setCookie(resp, "session")
		if ck == nil || !ck.Expires.IsZero() || ck.MaxAge != 0 {
			t.Fatalf("SetRememberMe(false) set %q; want a browser-session cookie", resp.Header.Values("Set-Cookie"))
		}
		if _, body := fetchOK(t, c, ts.URL+"/visit"); body != "1" {
			t.Errorf("browser-session cookie does not carry the session: visit = %s", body)
		}
		resp, _ = fetchOK(t, c, ts.URL+"/remember")
		if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge <= 0 {
			t.Errorf("SetRememberMe(true) set %q; want a persistent cookie", resp.Header.Values("Set-Cookie"))
		}
	})
	t.Run("existing session", func(t *testing.T) {
		c := ts.client(t)
		fetchOK(t, c, ts.URL+"/visit")
		resp, _ := fetchOK(t, c, ts.URL+"/forget")
		if ck := setCookie(resp, "session"); ck == nil || !ck.Expires.IsZero() || ck.MaxAge != 0 {
			t.Errorf("SetRememberMe(false) set %q; want the cookie re-sent without expiry", resp.Header.Values("Set-Cookie"))
		}
	})
}

func TestMaxSize(t *testing.T) {
	t.Parallel()
	const limit = 64
	big := strings.Repeat("x", 40)
	mux := http.NewServeMux()
	mux.Handle("/fill", handlerFunc(func(s *session.Session, r *http.Request) error {
		return s.Set("a", big) // 1 + 42 bytes
	}))
	mux.Handle("/overflow", handlerFunc(func(s *session.Session, r *http.Request) error {
		var errs []error
		// Set checks the cap at once on a session it has read; on one it
		// has not, the store checks it at the save (TestMaxSizeEnforcedByStore).
		if err := s.Err(); err != nil {
			return err
		}
		if err := s.Set("b", big); !errors.Is(err, session.ErrTooLarge) {
			errs = append(errs, fmt.Errorf("Set over the cap = %v, want ErrTooLarge", err))
		}
		if err := s.Set("a", big+big); !errors.Is(err, session.ErrTooLarge) {
			errs = append(errs, fmt.Errorf("growing a value over the cap = %v, want ErrTooLarge", err))
		}
		if v, _ := session.Value[string](s, "a"); v != big {
			errs = append(errs, fmt.Errorf("a refused Set changed a to %q", v))
		}
		if got, err := s.Keys(); err != nil || !slices.Equal(got, []string{"a"}) {
			errs = append(errs, fmt.Errorf("Keys after refused Sets = %q, %v", got, err))
		}
		if _, err := session.Update(s, "c", func(string, bool) (string, error) { return big, nil }); !errors.Is(err, session.ErrTooLarge) {
			errs = append(errs, fmt.Errorf("Update over the cap = %v, want ErrTooLarge", err))
		}
		if err := s.Set("small", 1); err != nil {
			errs = append(errs, fmt.Errorf("Set within the cap: %v", err))
		}
		return errors.Join(errs...)
	}))
	mux.Handle("/check", handlerFunc(func(s *session.Session, r *http.Request) error {
		if got, err := s.Keys(); err != nil || !slices.Equal(got, []string{"a", "small"}) {
			return fmt.Errorf("stored keys = %q, %v, want a and small", got, err)
		}
		return nil
	}))
	ts := startServer(t, serverSetup{cfg: session.Config{MaxSize: limit}}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/fill")
	fetchOK(t, c, ts.URL+"/overflow")
	fetchOK(t, c, ts.URL+"/check")
}

// TestNoMiddleware: a handler that was never wrapped by Manager.Handler is
// a wiring mistake, and FromContext says so loudly, naming the fix,
// instead of handing out a session whose calls silently do nothing.
// (Until the architecture rework every call returned ErrNoMiddleware and
// Delete, Clear and the accessors did nothing; issue 10 made it a panic.)
func TestNoMiddleware(t *testing.T) {
	t.Parallel()
	defer func() {
		msg := fmt.Sprint(recover())
		if !strings.Contains(msg, "Manager.Handler") {
			t.Errorf("FromContext outside the middleware panicked with %q; want a message naming Manager.Handler", msg)
		}
	}()
	session.FromContext(context.Background())
	t.Error("FromContext outside the middleware returned")
}

// TestWriteBeforeRead covers changes made before the session is loaded
// (Set, Delete and Clear need nothing from the store): a later read in the
// same request sees them on top of the stored values, and a write to a
// session that is gone starts a new one holding the change.
func TestWriteBeforeRead(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/mixed", handlerFunc(func(s *session.Session, r *http.Request) error {
		if err := errors.Join(s.Delete("color"), s.Set("size", "L")); err != nil {
			return err
		}
		got, err := s.Keys()
		if err != nil {
			return err
		}
		keys := strings.Join(got, ",")
		if keys != "shape,size" {
			return fmt.Errorf("keys after blind changes = %q, want shape,size", keys)
		}
		return nil
	}))
	onEachStore(t, func(t *testing.T, start startFunc) {
		ts, records := start(mux)
		c := ts.client(t)
		fetchOK(t, c, ts.URL+"/set?color=blue&shape=round")
		fetchOK(t, c, ts.URL+"/mixed")
		for key, want := range map[string]string{"color": "", "shape": "round", "size": "L"} {
			if _, got := fetchOK(t, c, ts.URL+"/get?key="+key); got != want {
				t.Errorf("%s = %q, want %q", key, got, want)
			}
		}

		// Revoke it behind the client's back: a blind write starts afresh.
		fetchOK(t, c, ts.URL+"/login?user=ada")
		if _, err := ts.manager.RevokeUser(t.Context(), "ada"); err != nil {
			t.Fatal(err)
		}
		resp, _ := fetchOK(t, c, ts.URL+"/set?note=hi")
		if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge <= 0 {
			t.Fatalf("a blind write to a revoked session set cookie %v; want a new session's", ck)
		}
		if _, got := fetchOK(t, c, ts.URL+"/get?key=note"); got != "hi" {
			t.Errorf("note = %q in the new session, want hi", got)
		}
		if _, got := fetchOK(t, c, ts.URL+"/whoami"); got != "" {
			t.Errorf("the new session belongs to %q; want nobody", got)
		}
		if n := records(); n != 1 {
			t.Errorf("store holds %d records; want only the new session", n)
		}
	})
}

// TestRenewDoesNotUndoOtherRequests renews a session that another request
// changed or ended after this one loaded it: a logout stays a logout, and an
// acknowledged write moves into the renewed session.
func TestRenewDoesNotUndoOtherRequests(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, start startFunc) {
		loaded, release := make(chan struct{}), make(chan struct{})
		mux := http.NewServeMux()
		mux.Handle("/", appHandler())
		mux.Handle("/slow-renew", handlerFunc(func(s *session.Session, r *http.Request) error {
			if err := s.Err(); err != nil {
				return err
			}
			loaded <- struct{}{}
			<-release
			return s.Renew()
		}))
		ts, records := start(mux)
		renewAfter := func(c *http.Client, meanwhile func()) *http.Response {
			t.Helper()
			done := make(chan *http.Response, 1)
			go func() {
				resp, err := c.Get(ts.URL + "/slow-renew")
				if err != nil {
					t.Error(err)
					done <- nil
					return
				}
				resp.Body.Close()
				done <- resp
			}()
			<-loaded
			meanwhile()
			release <- struct{}{}
			return <-done
		}

		loggedOut := ts.client(t)
		fetchOK(t, loggedOut, ts.URL+"/login?user=ada")
		resp := renewAfter(loggedOut, func() { fetchOK(t, loggedOut, ts.URL+"/destroy") })
		if resp == nil {
			return
		}
		if ck := setCookie(resp, "session"); ck != nil && ck.MaxAge > 0 {
			t.Errorf("a renewal after a logout issued a live cookie %v", ck)
		}
		if n := records(); n != 0 {
			t.Errorf("store holds %d records after logout then renewal; the session came back", n)
		}
		if _, body := fetchOK(t, loggedOut, ts.URL+"/whoami"); body != "" {
			t.Errorf("signed in as %q after logout", body)
		}

		shopper := ts.client(t)
		fetchOK(t, shopper, ts.URL+"/login?user=grace")
		renewAfter(shopper, func() { fetchOK(t, shopper, ts.URL+"/set?cart=book") })
		if _, body := fetchOK(t, shopper, ts.URL+"/get?key=cart"); body != "book" {
			t.Errorf("cart = %q after a renewal raced the write; want the acknowledged write kept", body)
		}
		if _, body := fetchOK(t, shopper, ts.URL+"/whoami"); body != "grace" {
			t.Errorf("whoami = %q after renewal; want grace", body)
		}
	})
}

// TestUpdateResendsMovedCookie: an Update slides the idle expiry like any
// write, so its response must carry the cookie with the new expiry, or the
// browser drops a session the server still holds.
func TestUpdateResendsMovedCookie(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/incr", handlerFunc(func(s *session.Session, r *http.Request) error {
		_, err := session.Update(s, "n", func(n int, _ bool) (int, error) { return n + 1, nil })
		return err
	}))
	ts := startServer(t, serverSetup{cfg: session.Config{IdleTimeout: 30 * time.Minute}}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/incr")
	ts.clock.Advance(20 * time.Minute)
	resp, _ := fetchOK(t, c, ts.URL+"/incr")
	ck := setCookie(resp, "session")
	if ck == nil {
		t.Fatal("an Update that moved the idle expiry sent no cookie")
	}
	if want := ts.clock.Now().Add(30 * time.Minute); !ck.Expires.Equal(want) {
		t.Errorf("cookie expires %v; want the moved deadline %v", ck.Expires, want)
	}
}

// TestCacheControlKept: the session's no-cache="Set-Cookie" joins the
// handler's Cache-Control instead of replacing it.
func TestCacheControlKept(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := session.FromContext(r.Context()).Set("k", 1); err != nil {
			t.Error(err)
		}
		io.WriteString(w, "private")
	}))
	resp, _ := fetchOK(t, ts.client(t), ts.URL)
	got := resp.Header.Values("Cache-Control")
	if !slices.Contains(got, "no-store") || !slices.Contains(got, `no-cache="Set-Cookie"`) {
		t.Errorf("Cache-Control = %q; want the handler's no-store kept beside no-cache=\"Set-Cookie\"", got)
	}
}
