package session_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

// loadRecorder is a Store that remembers the keys Load was asked for.
type loadRecorder struct {
	session.Store
	mu   sync.Mutex
	keys []string
}

func (s *loadRecorder) Load(ctx context.Context, key string) (*session.Record, error) {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.Store.Load(ctx, key)
}

// take returns the keys loaded since the last call.
func (s *loadRecorder) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.keys
	s.keys = nil
	return keys
}

// FuzzCookieHeader sends arbitrary Cookie headers through the whole
// middleware. No header may cause anything but a 200, and the store may
// only be asked for the session of a cookie in the header that verifies:
// unsigned input never costs a store query. (FuzzCookieDecode checks that
// only tokens the server signed verify.)
func FuzzCookieHeader(f *testing.F) {
	store := &loadRecorder{Store: session.NewMemoryStoreOnClock(time.Now)}
	m, err := session.New(context.Background(), session.Config{Secret: "fuzz-cookie-header-secret-0123456789abcdef"},
		session.WithStore(store), session.WithLogger(discardLogger))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	h := m.Handler(appHandler())
	var values []string
	for range 2 {
		ck := setCookieOf(serve(h, "/set?color=blue", ""))
		if ck == nil {
			f.Fatal("no cookie issued")
		}
		values = append(values, ck.Value)
	}
	// A signed token whose session is gone: a Load for it is allowed (the
	// signature verified) and finds nothing.
	if rec := serve(h, "/destroy", "session="+values[1]); rec.Code != http.StatusOK {
		f.Fatalf("destroy: status %d", rec.Code)
	}
	valid := values[0]
	for _, seed := range []string{
		"",
		"session=" + valid,
		"session=" + values[1] + "; session=" + valid,
		"session=junk; session=" + valid,
		strings.Repeat("session=x; ", 10) + "session=" + valid,
		`session="` + valid + `"`,
		"session=" + valid[:len(valid)-1],
		"session=" + valid + "=",
		"session=" + strings.ToLower(valid),
		"sid=" + valid,
		"session=",
		"session",
		";;;",
		"session=" + strings.Repeat("A", 10<<10),
		"session=%%%***!!!",
		"session=" + base64.URLEncoding.EncodeToString([]byte("1|dG9rZW4=|mac")),
		"session=\x00\xff; session=\t",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		store.take()
		for _, path := range []string{"/get?key=color", "/read"} {
			rec := serve(h, path, header)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s with Cookie %q: status %d %q", path, header, rec.Code, rec.Body.String())
			}
		}
		// Worker processes share the secret but not the issued tokens, so
		// "signed" is judged by verifying the header's cookies.
		signed := map[string]bool{}
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["Cookie"] = []string{header}
		for _, ck := range req.CookiesNamed("session") {
			if token, ok := session.TokenOfCookie(m, ck.Value); ok {
				signed[sha256Hex(token)] = true
			}
		}
		for _, key := range store.take() {
			if !signed[key] {
				t.Fatalf("Cookie %q made the store look up %s, which no signed cookie in it hashes to", header, key)
			}
		}
	})
}

// FuzzStoredValue plants arbitrary bytes as a stored value, as a corrupted
// or hand-edited store, or a value written by another version of the
// application, would hold, and reads it every way a handler can. Nothing
// may panic, the request must succeed, and the session's other values must
// stay readable.
func FuzzStoredValue(f *testing.F) {
	store := session.NewMemoryStoreOnClock(time.Now)
	m, err := session.New(context.Background(), session.Config{Secret: "fuzz-stored-value-secret-0123456789abcdef"},
		session.WithStore(store), session.WithLogger(discardLogger))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	type profile struct {
		Name  string
		Langs []string
		Age   *int
	}
	h := m.Handler(handlerFunc(func(s *session.Session, r *http.Request) error {
		var errs []error
		for into, err := range map[string]error{
			"int": valueErr[int](s), "string": valueErr[string](s), "bool": valueErr[bool](s), "float64": valueErr[float64](s),
			"[]any": valueErr[[]any](s), "map": valueErr[map[string]any](s), "profile": valueErr[profile](s), "*int": valueErr[*int](s),
			"any": valueErr[any](s), "json.RawMessage": valueErr[json.RawMessage](s), "[]string": valueErr[[]string](s), "uint8": valueErr[uint8](s),
		} {
			if errors.Is(err, session.ErrNoValue) {
				errs = append(errs, fmt.Errorf("Value[%s](k): %v", into, err))
			}
		}
		_, _ = session.Update(s, "k", func(n int, _ bool) (int, error) { return n + 1, nil })
		if _, err := s.Flashes(); err != nil {
			errs = append(errs, fmt.Errorf("Flashes: %v", err))
		}
		if err := s.AddFlash("next"); err != nil {
			errs = append(errs, fmt.Errorf("AddFlash: %v", err))
		}
		if _, err := s.Keys(); err != nil {
			errs = append(errs, fmt.Errorf("Keys: %v", err))
		}
		if n, err := session.Value[int](s, "ok"); err != nil || n != 1 {
			errs = append(errs, fmt.Errorf("Value[int](ok) = %d, %v; want the untouched 1", n, err))
		}
		return errors.Join(errs...)
	}))
	first := setCookieOf(serve(m.Handler(appHandler()), "/set?ok=1", ""))
	if first == nil {
		f.Fatal("no cookie issued")
	}
	token, _ := session.TokenOfCookie(m, first.Value)
	key := sha256Hex(token)
	for _, seed := range []string{
		`1`, `"not a number"`, `{"n": "not a number"}`, `[1, 2, 3]`, `null`, `true`, `1e400`, `-0`, `18446744073709551616`,
		`{"Name": 5, "Langs": "go", "Age": "x"}`, `"\ud800"`, `"\u0000"`, `[`, ``, `{"a":` + strings.Repeat("[", 2000),
		"\xff\xfe", `  7  `, `["a", 1, null]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := store.Modify(t.Context(), key, func(rec *session.Record) error {
			rec.Values = map[string]json.RawMessage{"ok": json.RawMessage(`1`), "k": raw, "__flash": raw}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := serve(h, "/", "session="+first.Value)
		if rec.Code != http.StatusOK {
			t.Fatalf("stored value %q: status %d %q", raw, rec.Code, rec.Body.String())
		}
	})
}

// FuzzPostgresTableName gives PostgresStore arbitrary table names, which it
// quotes rather than validates. Each is either refused up front, naming
// PostgresOptions.Table, or becomes a working table of exactly that name;
// none runs as SQL, so the canary table beside it survives.
func FuzzPostgresTableName(f *testing.F) {
	pool := pgtest.Pool(f)
	for _, seed := range []string{
		"session", "Upper", `a"b`, `x"; DROP TABLE canary; --`, "x; DROP TABLE canary", "x'y", `\`, "$1", "ünï©ødé",
		"with space", "a.b", "", ".", strings.Repeat("n", 63), strings.Repeat("é", 32), "session_migrations", "pg_class", "\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		schema := strings.TrimSuffix(pgtest.Schema(t), ".session")
		canary := `"` + schema + `"."canary"`
		pgtest.Exec(t, "CREATE TABLE "+canary+" (id int)")
		if name == "canary" {
			return
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := session.NewPostgresStore(ctx, pool, session.PostgresOptions{Table: schema + "." + name})
		if err != nil {
			if !strings.Contains(err.Error(), "PostgresOptions.Table") {
				t.Fatalf("table %q: %v; want it refused up front, or working", name, err)
			}
			return
		}
		rec := &session.Record{Values: map[string]json.RawMessage{"a": json.RawMessage(`1`)}, Expiry: time.Now().Add(time.Hour)}
		if err := s.Insert(ctx, "k", rec); err != nil {
			t.Fatalf("table %q: Insert: %v", name, err)
		}
		if _, err := s.Load(ctx, "k"); err != nil {
			t.Fatalf("table %q: Load: %v", name, err)
		}
		if _, err := s.(session.UserIndex).ListUser(ctx, "someone"); err != nil {
			t.Fatalf("table %q: ListUser: %v", name, err)
		}
		if _, err := s.(session.Pruner).Prune(ctx, 10); err != nil {
			t.Fatalf("table %q: Prune: %v", name, err)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", schema, name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("table %q: %d tables of that exact name (%v)", name, n, err)
		}
		pgtest.Exec(t, "SELECT FROM "+canary)
	})
}

// valueErr is the error of reading key "k" of s as a T.
func valueErr[T any](s *session.Session) error {
	_, err := session.Value[T](s, "k")
	return err
}
