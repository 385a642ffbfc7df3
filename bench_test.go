package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// benchManager returns a Manager on the memory store and a cookie for a
// stored session holding a small value.
func benchManager(b *testing.B) (*Manager, *http.Cookie) {
	b.Helper()
	m, err := New(context.Background(), Config{Secret: "benchmark-secret-benchmark-secret-0123"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("user", map[string]any{"id": 42, "name": "Ada"})
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		b.Fatalf("got %d cookies, want 1", len(cookies))
	}
	return m, cookies[0]
}

// discardWriter is a ResponseWriter that keeps headers and drops the body,
// so the benchmark measures the middleware, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkMiddleware measures the per-request cost of the middleware on the
// memory store for each way a handler may use its session.
func BenchmarkMiddleware(b *testing.B) {
	type user struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	cases := []struct {
		name    string
		cookie  bool
		handler func(*Session)
	}{
		{"untouched", true, func(*Session) {}},
		{"read", true, func(s *Session) {
			if _, err := Value[user](s, "user"); err != nil {
				panic(err)
			}
		}},
		{"write", true, func(s *Session) {
			if err := s.Set("n", 1); err != nil {
				panic(err)
			}
		}},
		{"new", false, func(s *Session) {
			if err := s.Set("n", 1); err != nil {
				panic(err)
			}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m, cookie := benchManager(b)
			h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c.handler(FromContext(r.Context()))
			}))
			r := httptest.NewRequest("GET", "/", nil)
			if c.cookie {
				r.AddCookie(cookie)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

func BenchmarkCookie(b *testing.B) {
	codec, err := newCookieCodec("session", defaultLifetime, "benchmark-secret-benchmark-secret-0123", []string{"previous-secret-previous-secret-0123456"}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	token := newToken()
	value, err := codec.sign(token)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.sign(token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, refusal := codec.verify(value); refusal != "" {
				b.Fatal("cookie does not verify")
			}
		}
	})
	b.Run("verify-cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := codec.tokenOf(value); !ok {
				b.Fatal("cookie does not verify")
			}
		}
	})
	b.Run("reject", func(b *testing.B) {
		junk := value[:len(value)-4] + "AAAA"
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := codec.tokenOf(junk); ok {
				b.Fatal("junk verified")
			}
		}
	})
}

// BenchmarkValue measures Set and Value on a loaded session: JSON encoding
// and decoding of a small struct.
func BenchmarkValue(b *testing.B) {
	type cart struct {
		Items []string `json:"items"`
		Total int      `json:"total"`
	}
	m, cookie := benchManager(b)
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(cookie)
	s := FromContext(m.Begin(r).Context())
	v := cart{Items: []string{"a", "b", "c"}, Total: 3}
	if _, err := s.Keys(); err != nil { // load the session, as a handler that reads first would
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Set("cart", v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Value[cart](s, "cart"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// wireRow is a pgx.Row that scans columns as PostgreSQL sends them, in the
// formats pgx asks for or all as text (pgx's simple protocol), through
// pgx's own codecs, without a connection: scanRecord pays what it pays on
// a real row, less the network.
type wireRow struct {
	m      *pgtype.Map
	fields []pgconn.FieldDescription
	values [][]byte
}

func (r *wireRow) Scan(dest ...any) error {
	if len(dest) == 1 {
		if rs, ok := dest[0].(pgx.RowScanner); ok {
			return rs.ScanRow(wireRows{r})
		}
	}
	if len(dest) != len(r.values) {
		dest = append(make([]any, len(r.values)-len(dest)), dest...) // without data
	}
	for i, d := range dest {
		if err := r.m.Scan(r.fields[i].DataTypeOID, r.fields[i].Format, r.values[i], d); err != nil {
			return err
		}
	}
	return nil
}

// wireRows is a wireRow as the pgx.Rows a pgx.RowScanner is given.
type wireRows struct{ *wireRow }

func (wireRows) Close()                        {}
func (wireRows) Err() error                    { return nil }
func (wireRows) CommandTag() pgconn.CommandTag { return pgconn.NewCommandTag("SELECT 1") }
func (wireRows) Next() bool                    { return false }
func (wireRows) Values() ([]any, error)        { return nil, errors.New("wireRows: Values") }
func (r wireRows) RawValues() [][]byte         { return r.values }
func (wireRows) Conn() *pgx.Conn               { return nil }
func (r wireRows) TypeMap() *pgtype.Map        { return r.m }

func (r wireRows) FieldDescriptions() []pgconn.FieldDescription { return r.fields }

// loadRow returns the row the PostgreSQL store's load statement returns for
// a session whose data column is data (jsonb, in PostgreSQL's text form),
// with the metadata a session of the sessionbench read workload has, in the
// formats pgx asks for: each type's preferred one, which for jsonb is text.
func loadRow(tb testing.TB, data string) *wireRow {
	return loadRowFormat(tb, data, -1)
}

// loadRowFormat is loadRow with every column in format, or with format -1
// in the formats pgx asks for.
func loadRowFormat(tb testing.TB, data string, format int16) *wireRow {
	now := time.Now()
	return wireRowOf(tb, []any{
		data,
		nil, // user_id
		true,
		now.Add(-time.Hour),
		now.Add(14 * 24 * time.Hour),
		nil, // idle_timeout
		now.Add(30 * time.Minute),
		now.Add(-time.Minute),
		"Go-http-client/1.1",
		"127.0.0.1",
		now,
	}, format)
}

// wireRowOf returns the load statement's row holding cols (nil for NULL),
// one for each of data, recordColumns and now(), every column in format, or
// with format -1 in the formats pgx asks for.
func wireRowOf(tb testing.TB, cols []any, format int16) *wireRow {
	tb.Helper()
	oids := append([]uint32{pgtype.JSONBOID}, recordOIDs[:]...)
	if len(cols) != len(oids) {
		tb.Fatalf("%d columns, want %d", len(cols), len(oids))
	}
	m := pgtype.NewMap()
	row := &wireRow{m: m}
	for i, oid := range oids {
		f := format
		if f < 0 {
			t, _ := m.TypeForOID(oid)
			f = t.Codec.PreferredFormat()
		}
		var raw []byte
		if cols[i] != nil {
			var err error
			if raw, err = m.Encode(oid, f, cols[i], nil); err != nil {
				tb.Fatalf("encode %v: %v", cols[i], err)
			}
		}
		row.fields = append(row.fields, pgconn.FieldDescription{DataTypeOID: oid, Format: f})
		row.values = append(row.values, raw)
	}
	return row
}

// benchData are data columns as PostgreSQL's jsonb prints them: the
// sessionbench session, and a session of a typical application.
var benchData = []struct{ name, data string }{
	{"bench", `{"user": {"id": 42, "name": "Ada"}}`},
	{"typical", `{"cart": {"items": [{"qty": 2, "sku": "A-1001", "price": 12.5}, {"qty": 1, "sku": "B-2002", "price": 3.25}], "total": 28.25}, ` +
		`"csrf": "k6Yb0ZlH3mL9w1J8cVqXoP2tR4sU7eD5", "user": {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "editor"], "email": "ada@example.com"}, ` +
		`"prefs": {"tz": "Europe/London", "lang": "en-GB", "theme": "dark"}, "__flash": ["Saved \"draft\" \u2014 ok"], "oauth_state": null}`},
}

// BenchmarkScanRecord measures scanRecord on the load statement's row:
// the pgx scan of every column and the decoding of the values.
func BenchmarkScanRecord(b *testing.B) {
	for _, c := range benchData {
		b.Run(c.name, func(b *testing.B) {
			row := loadRow(b, c.data)
			if _, err := scanRecord(row, true); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := scanRecord(row, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
