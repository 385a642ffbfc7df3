package session

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestRecordRowDecodeMatchesScan checks recordRow's own decoding of the
// wire format against pgx's Scan of the same row, for rows with and
// without each column that may be NULL, and that a row decode refuses
// goes to pgx's Scan, which reports it as before.
func TestRecordRowDecodeMatchesScan(t *testing.T) {
	at := time.Date(2026, 11, 30, 14, 30, 15, 123456000, time.UTC)
	full := []any{`{"a": 1}`, "user-7", false, at.Add(-time.Hour), at.Add(time.Hour), int64(90 * time.Second / time.Microsecond),
		at.Add(time.Minute), at.Add(-time.Second), "Mozilla/5.0", "192.0.2.1", at}
	empty := []any{`{}`, nil, true, at.Add(-time.Hour), at.Add(time.Hour), nil, nil, at.Add(-time.Hour), nil, nil, at}
	for _, cols := range [][]any{full, empty} {
		for _, format := range []int16{-1, pgtype.BinaryFormatCode} {
			row := wireRowOf(t, cols, format)
			decoded := &recordRow{withData: true}
			if !decoded.decode(row.fields, row.values) {
				t.Fatalf("format %d: decode refused %v", format, cols)
			}
			scanned := &recordRow{withData: true}
			if err := scanned.scan(wireRows{row}); err != nil {
				t.Fatal(err)
			}
			if string(decoded.data) != string(scanned.data) {
				t.Errorf("format %d: data %q, pgx scans %q", format, decoded.data, scanned.data)
			}
			d, s := decoded.rec, scanned.rec
			if d.UserID != s.UserID || d.Persistent != s.Persistent || !d.Created.Equal(s.Created) || !d.Expiry.Equal(s.Expiry) ||
				d.IdleTimeout != s.IdleTimeout || !d.IdleExpiry.Equal(s.IdleExpiry) || d.IdleExpiry.IsZero() != s.IdleExpiry.IsZero() ||
				!d.LastSeen.Equal(s.LastSeen) || d.UserAgent != s.UserAgent || d.IP != s.IP || !d.LoadedAt.Equal(s.LoadedAt) ||
				d.Created.Location() != s.Created.Location() {
				t.Errorf("format %d: decoded %+v\npgx scans %+v", format, d, s)
			}
			if cols[1] != nil && (d.UserID != "user-7" || d.IdleTimeout != 90*time.Second || !d.LoadedAt.Equal(at) || d.IP != "192.0.2.1") {
				t.Errorf("format %d: decoded %+v from %v", format, d, cols)
			}
		}
	}

	// An infinite expiry is no time.Time: decode refuses it and pgx's Scan
	// reports it.
	inf := append([]any(nil), full...)
	inf[4] = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	row := wireRowOf(t, inf, -1)
	if (&recordRow{withData: true}).decode(row.fields, row.values) {
		t.Error("decode took an infinite timestamp")
	}
	if _, err := scanRecord(row, true); err == nil {
		t.Error("scanRecord read an infinite expiry without an error")
	}
	// So does a NULL where the statement never gives one.
	null := append([]any(nil), full...)
	null[2] = nil
	if _, err := scanRecord(wireRowOf(t, null, -1), true); err == nil {
		t.Error("scanRecord read a NULL persistent without an error")
	}
	// And a type map that scans timestamptz into another zone has pgx
	// honour it.
	row = wireRowOf(t, full, -1)
	row.m.RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	rec, err := scanRecord(row, true)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Created.Location() != time.UTC {
		t.Errorf("created in %v, want the type map's UTC", rec.Created.Location())
	}
}
