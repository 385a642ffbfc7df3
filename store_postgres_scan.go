package session

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// scanRecord reads a row of data (when withData), recordColumns and now().
// Every session the PostgreSQL store reads comes through it, so it decodes
// the columns' wire format itself (recordRow.decode) rather than have pgx
// plan a scan of each of the eleven columns on every row (pgx keeps no
// plan from one query to the next), and leaves a row in any other shape to
// pgx's Scan.
func scanRecord(row pgx.Row, withData bool) (*Record, error) {
	// One allocation holds the record and what is scanned beside it.
	r := &recordRow{withData: withData}
	if err := row.Scan(r); err != nil {
		return nil, err
	}
	rec := &r.rec
	if withData {
		values, err := decodeValues(r.data)
		if err != nil {
			return nil, fmt.Errorf("%w: its values are not a JSON object (%v)", ErrCorrupt, err)
		}
		rec.Values = values
	}
	return rec, nil
}

// recordRow is what scanRecord scans into: a pgx.RowScanner, which pgx
// hands the whole row.
type recordRow struct {
	withData bool
	rec      Record
	// data is the data column's JSON text, a copy of the row's: the values
	// decodeValues makes of it point into it, and the connection reads the
	// next row over its own buffer.
	data []byte
}

// recordOIDs are the types of recordColumns and now(), after data.
var recordOIDs = [...]uint32{
	pgtype.TextOID,        // user_id
	pgtype.BoolOID,        // persistent
	pgtype.TimestamptzOID, // created_at
	pgtype.TimestamptzOID, // expires_at
	pgtype.Int8OID,        // idle_timeout, in microseconds
	pgtype.TimestamptzOID, // idle_expires_at
	pgtype.TimestamptzOID, // last_seen, or created_at
	pgtype.TextOID,        // user_agent
	pgtype.TextOID,        // ip
	pgtype.TimestamptzOID, // now()
}

// ScanRow implements pgx.RowScanner. A connection whose type map scans
// timestamptz otherwise than pgx's default (an AfterConnect that sets a
// ScanLocation, say) gets pgx's Scan, which honours it.
func (r *recordRow) ScanRow(rows pgx.Rows) error {
	if defaultTimestamptz(rows.TypeMap()) && r.decode(rows.FieldDescriptions(), rows.RawValues()) {
		return nil
	}
	return r.scan(rows)
}

// decode decodes a row of exactly the expected types in the formats pgx
// asks for (text and jsonb as text, the others binary) or all binary. It
// reports false, having set nothing that scan does not set again, for a
// row in any other shape: another format or type, a NULL where the
// statement never gives one, an infinite timestamp.
func (r *recordRow) decode(fields []pgconn.FieldDescription, values [][]byte) bool {
	if len(fields) != len(values) {
		return false
	}
	if r.withData {
		if len(fields) == 0 || fields[0].DataTypeOID != pgtype.JSONBOID || values[0] == nil {
			return false
		}
		switch v := values[0]; fields[0].Format {
		case pgtype.TextFormatCode:
			r.data = bytes.Clone(v)
		case pgtype.BinaryFormatCode:
			// A version byte, 1, then the same text.
			if len(v) == 0 || v[0] != 1 {
				return false
			}
			r.data = bytes.Clone(v[1:])
		default:
			return false
		}
		fields, values = fields[1:], values[1:]
	}
	if len(fields) != len(recordOIDs) {
		return false
	}
	for i, oid := range recordOIDs {
		// text is the same bytes in either format.
		if fields[i].DataTypeOID != oid || (fields[i].Format != pgtype.BinaryFormatCode && oid != pgtype.TextOID) {
			return false
		}
	}
	rec := &r.rec
	var idle int64
	ok := len(values[1]) == 1 &&
		decodeTimestamptz(values[2], &rec.Created) && decodeTimestamptz(values[3], &rec.Expiry) &&
		(values[4] == nil || decodeInt8(values[4], &idle)) &&
		(values[5] == nil || decodeTimestamptz(values[5], &rec.IdleExpiry)) &&
		decodeTimestamptz(values[6], &rec.LastSeen) && decodeTimestamptz(values[9], &rec.LoadedAt)
	if !ok {
		return false
	}
	rec.Persistent = values[1][0] != 0
	rec.IdleTimeout = time.Duration(idle) * time.Microsecond
	// NULL is "" for each text column.
	rec.UserID, rec.UserAgent, rec.IP = string(values[0]), string(values[7]), string(values[8])
	return true
}

// scan is pgx's Scan of the same columns, for a row decode does not take.
func (r *recordRow) scan(rows pgx.Rows) error {
	var (
		userID, userAgent, ip pgtype.Text
		idleMicros            pgtype.Int8
		idleExpiry            pgtype.Timestamptz
	)
	rec := &r.rec
	dest := []any{&r.data, &userID, &rec.Persistent, &rec.Created, &rec.Expiry, &idleMicros, &idleExpiry, &rec.LastSeen, &userAgent, &ip, &rec.LoadedAt}
	if !r.withData {
		dest = dest[1:]
	}
	// pgx scans jsonb into a *[]byte as a copy of its own, never as a
	// slice of the connection's read buffer.
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rec.UserID, rec.UserAgent, rec.IP = userID.String, userAgent.String, ip.String
	rec.IdleTimeout = time.Duration(idleMicros.Int64) * time.Microsecond
	rec.IdleExpiry = idleExpiry.Time
	return nil
}

// defaultTimestamptz reports whether m scans timestamptz with pgx's codec
// as registered by default, into the local time zone, which is what
// decodeTimestamptz reproduces.
func defaultTimestamptz(m *pgtype.Map) bool {
	if m == nil {
		return false
	}
	t, ok := m.TypeForOID(pgtype.TimestamptzOID)
	if !ok {
		return false
	}
	codec, ok := t.Codec.(*pgtype.TimestamptzCodec)
	return ok && codec.ScanLocation == nil
}

// postgresEpoch is 2000-01-01 UTC, where PostgreSQL's binary timestamps
// count from, in seconds since the Unix epoch.
const postgresEpoch = 946684800

// decodeTimestamptz decodes a binary timestamptz, microseconds since
// postgresEpoch, into the local time zone, with pgx's arithmetic: seconds
// and microseconds apart, so that no date PostgreSQL accepts overflows. It
// reports false for a NULL, malformed or infinite value.
func decodeTimestamptz(src []byte, t *time.Time) bool {
	if len(src) != 8 {
		return false
	}
	us := int64(binary.BigEndian.Uint64(src))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return false
	}
	*t = time.Unix(postgresEpoch+us/1000000, us%1000000*1000)
	return true
}

// decodeInt8 decodes a binary int8.
func decodeInt8(src []byte, n *int64) bool {
	if len(src) != 8 {
		return false
	}
	*n = int64(binary.BigEndian.Uint64(src))
	return true
}
