package session

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartscheduler/session/internal/pgtest"
)

// TestRecordRowPathsAgree reads the same rows through recordRow's own
// decoder, on a row in the formats pgx asks for by default, and through
// pgx's Scan, on the same row sent as text by the simple protocol, and
// wants the same records.
func TestRecordRowPathsAgree(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := NewPostgresStore(ctx, pgtest.Pool(t), PostgresOptions{Table: pgtest.Schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Times with nanoseconds: the store keeps microseconds, and both paths
	// must read back what pgx stored, truncated. One is before 2000,
	// PostgreSQL's epoch, where the wire value is negative.
	base := time.Now().Truncate(time.Second).Add(time.Hour + 123456789)
	records := map[string]*Record{
		"anonymous": {Values: map[string]json.RawMessage{}, Persistent: true, Created: base, Expiry: base.Add(time.Hour)},
		"user": {
			Values:  map[string]json.RawMessage{"user": json.RawMessage(`{"id":42,"name":"Ada \"the\" Countess ✓"}`), "n": json.RawMessage(`-1.5e3`)},
			UserID:  "user-ü-42",
			Created: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC), Expiry: base.Add(24 * time.Hour), IdleExpiry: base.Add(30 * time.Minute),
		},
	}
	for key, rec := range records {
		if err := s.Insert(ctx, key, rec); err != nil {
			t.Fatalf("Insert %s: %v", key, err)
		}
		if _, err := s.Apply(ctx, key, Change{Delete: []string{"absent"}}); err != nil {
			t.Fatalf("Apply %s: %v", key, err)
		}
		for _, stmt := range []struct {
			name, sql string
			withData  bool
		}{{"load", s.statement.load, true}, {"apply", s.statement.apply, false}} {
			args := []any{key}
			if !stmt.withData {
				args = append(args, false, []string{}, `{}`, false, nil, nil, int64(0))
			}
			read := func(mode pgx.QueryExecMode) (*Record, bool) {
				t.Helper()
				var fast bool
				r := recordRow{withData: stmt.withData}
				probe := rowScanFunc(func(rows pgx.Rows) error {
					var data []byte
					fast = (&recordRow{withData: stmt.withData}).decodeBinary(rows.FieldDescriptions(), rows.RawValues(), &data)
					return r.ScanRow(rows)
				})
				if err := s.pool.QueryRow(ctx, stmt.sql, append([]any{mode}, args...)...).Scan(probe); err != nil {
					t.Fatalf("%s %s in %v: %v", stmt.name, key, mode, err)
				}
				return &r.rec, fast
			}
			got, fast := read(pgx.QueryExecModeCacheStatement)
			if !fast {
				t.Fatalf("%s %s: a row in pgx's default formats did not take the fast path", stmt.name, key)
			}
			want, fast := read(pgx.QueryExecModeSimpleProtocol)
			if fast {
				t.Fatalf("%s %s: a row in text format took the fast path", stmt.name, key)
			}
			// The version and clock differ between the two reads of apply.
			want.Version, want.LoadedAt = got.Version, got.LoadedAt
			if got.UserID != want.UserID || got.Persistent != want.Persistent || got.Version != want.Version ||
				!got.Created.Equal(want.Created) || !got.Expiry.Equal(want.Expiry) || !got.IdleExpiry.Equal(want.IdleExpiry) ||
				!reflect.DeepEqual(got.Values, want.Values) {
				t.Errorf("%s %s:\n fast path    %+v\n general path %+v", stmt.name, key, got, want)
			}
			if stmt.withData && !got.Created.Equal(rec.Created.Truncate(time.Microsecond)) {
				t.Errorf("%s %s: created %v; stored %v", stmt.name, key, got.Created, rec.Created)
			}
			if !stmt.withData && got.Values != nil {
				t.Errorf("%s %s: values %v from a statement without the data column", stmt.name, key, got.Values)
			}
		}
	}
}

// TestRecordRowFarFutureDeadline loads a session whose deadline an
// operator pushed, in SQL, close to the end of PostgreSQL's timestamp
// range: microseconds since 1970 no longer fit an int64 there, and the
// session must still load live with that deadline.
func TestRecordRowFarFutureDeadline(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	table := pgtest.Schema(t)
	s, err := NewPostgresStore(ctx, pgtest.Pool(t), PostgresOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(ctx, "k", &Record{Values: map[string]json.RawMessage{}, Created: time.Now(), Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, "UPDATE "+s.table.String()+" SET expires_at = '294270-01-01 00:00:00+00'")
	rec, err := s.Load(ctx, "k")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := time.Date(294270, 1, 1, 0, 0, 0, 0, time.UTC); !rec.Expiry.Equal(want) {
		t.Errorf("Expiry %v; want %v", rec.Expiry, want)
	}
}

// TestRecordRowHonoursScanLocation loads through a pool whose connections
// register pgx's timestamptz codec with a ScanLocation: the store's times
// must come back in that zone, as pgx's own Scan returns them.
func TestRecordRowHonoursScanLocation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	zone := time.FixedZone("UTC+5", 5*60*60)
	cfg := pgtest.Config(t, pgtest.URL(t))
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: zone}})
		return nil
	}
	s, err := NewPostgresStore(ctx, pgtest.NewPool(t, cfg), PostgresOptions{Table: pgtest.Schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(ctx, "k", &Record{Values: map[string]json.RawMessage{}, Created: time.Now(), Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Load(ctx, "k")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for name, tm := range map[string]time.Time{"Created": rec.Created, "Expiry": rec.Expiry, "LoadedAt": rec.LoadedAt} {
		if tm.Location() != zone {
			t.Errorf("%s in %v; want the codec's ScanLocation %v", name, tm.Location(), zone)
		}
	}
}

// rowScanFunc is a function as a pgx.RowScanner.
type rowScanFunc func(pgx.Rows) error

func (f rowScanFunc) ScanRow(rows pgx.Rows) error { return f(rows) }

// FuzzSplitObject holds splitObject to encoding/json: on every input that
// json.Unmarshal decodes into an object with valid UTF-8 keys, it must
// agree value for value; what it refuses, decodeValues hands to
// encoding/json.
func FuzzSplitObject(f *testing.F) {
	for _, seed := range []string{
		`{}`, ` { } `, `{"user": {"id": 42, "name": "Ada"}, "n": 1}`, `{"a":"}\"{","b":[{"c":"]"}],"d":null}`,
		`{"k\u00e9y": true, "\"": false, "a\\b": -1.5e+3}`, `{"a": 1, "a": 2}`, `{"a": [1, [2, [3]]], "b": {}}`,
		`{"a": "\ud800"}`, "{\"\xff\": 1}", `{"a": 1,}`, `{"a" 1}`, `{"a": }`, `[1]`, `null`, `{"a": tru}`, `{"a": 1} x`,
		`{"a": {"b": 1}`, `{"a": "x`, "{\"a\":\t1\n,\r\"b\" : 2 }",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal(data, &want)
		got, ok := splitObject(data)
		if wantErr != nil || want == nil {
			return // invalid JSON or null: only PostgreSQL's output reaches splitObject
		}
		for k := range want {
			if !utf8.ValidString(k) || strings.ContainsRune(k, utf8.RuneError) {
				return // json.Unmarshal replaced bytes of a key; splitObject refuses it
			}
		}
		if !ok {
			t.Fatalf("splitObject refused %q, which encoding/json decodes", data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("splitObject(%q) = %q; encoding/json says %q", data, got, want)
		}
		for k, v := range got {
			if cap(v) != len(v) {
				t.Fatalf("value of %q has room to grow into its neighbour: len %d cap %d", k, len(v), cap(v))
			}
		}
	})
}

func BenchmarkDecodeValues(b *testing.B) {
	data := []byte(`{"n": 17, "cart": [1, 2, 3], "user": {"id": 42, "name": "Ada"}, "flash": "saved"}`)
	b.Run("splitObject", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := splitObject(data); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var values map[string]json.RawMessage
			if err := json.Unmarshal(data, &values); err != nil {
				b.Fatal(err)
			}
		}
	})
}
