package session

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// recordRow scans one row of the statements that return a session: the
// data column when withData is set, then the metadata columns and now()
// (see newStatements). Every session read goes through it, so it decodes
// the wire format of those columns itself rather than planning a pgx scan
// for each column on every row; a row in any other shape (all text, as the
// simple protocol sends) takes pgx's ordinary Scan instead.
type recordRow struct {
	withData bool
	rec      Record
}

// scanRecord reads a row of the load, rekey and lockForUpdate statements.
func scanRecord(row pgx.Row) (*Record, error) {
	r := recordRow{withData: true}
	if err := row.Scan(&r); err != nil {
		return nil, err
	}
	return &r.rec, nil
}

// scanMetadata reads a row of the apply statement, which returns no data.
func scanMetadata(row pgx.Row) (*Record, error) {
	var r recordRow
	if err := row.Scan(&r); err != nil {
		return nil, err
	}
	return &r.rec, nil
}

// metadataOIDs are the types of the columns after data: user_id,
// persistent, created_at, expires_at, idle_expires_at, version, now().
var metadataOIDs = [...]uint32{pgtype.TextOID, pgtype.BoolOID, pgtype.TimestamptzOID,
	pgtype.TimestamptzOID, pgtype.TimestamptzOID, pgtype.Int8OID, pgtype.TimestamptzOID}

// ScanRow implements pgx.RowScanner.
func (r *recordRow) ScanRow(rows pgx.Rows) error {
	var data []byte
	if !defaultTimestamptz(rows) || !r.decodeBinary(rows.FieldDescriptions(), rows.RawValues(), &data) {
		if err := r.scan(rows, &data); err != nil {
			return err
		}
	}
	if !r.withData {
		return nil
	}
	values, err := decodeValues(data)
	r.rec.Values = values
	return err
}

// decodeBinary decodes a row of exactly the expected types sent in the
// formats pgx asks for (binary, but text for jsonb and text), setting
// *data to the JSON text of the data column, which aliases the
// connection's buffer. It reports false, having set nothing the slow path
// does not overwrite, for a row in any other shape.
func (r *recordRow) decodeBinary(fields []pgconn.FieldDescription, values [][]byte, data *[]byte) bool {
	if len(fields) != len(values) {
		return false
	}
	if r.withData {
		// pgx asks for jsonb as text; in binary it is a version byte, 1,
		// then the same text.
		if len(fields) == 0 || fields[0].DataTypeOID != pgtype.JSONBOID {
			return false
		}
		switch v := values[0]; {
		case fields[0].Format == pgtype.TextFormatCode:
			*data = v
		case fields[0].Format == pgtype.BinaryFormatCode && len(v) > 0 && v[0] == 1:
			*data = v[1:]
		default:
			return false
		}
		fields, values = fields[1:], values[1:]
	}
	if len(fields) != len(metadataOIDs) {
		return false
	}
	for i, oid := range metadataOIDs {
		// text is the same bytes in either format; pgx asks for text.
		if fields[i].DataTypeOID != oid || (fields[i].Format != pgtype.BinaryFormatCode && oid != pgtype.TextOID) {
			return false
		}
	}
	// Every column but user_id and idle_expires_at is NOT NULL.
	if len(values[1]) != 1 || len(values[5]) != 8 {
		return false
	}
	var created, expiry, idle, now time.Time
	ok := decodeTimestamptz(values[2], &created) && decodeTimestamptz(values[3], &expiry) &&
		decodeTimestamptz(values[6], &now) && (values[4] == nil || decodeTimestamptz(values[4], &idle))
	if !ok {
		return false
	}
	r.rec.UserID = string(values[0]) // "" for NULL
	r.rec.Persistent = values[1][0] != 0
	r.rec.Created, r.rec.Expiry, r.rec.IdleExpiry, r.rec.LoadedAt = created, expiry, idle, now
	r.rec.Version = int64(binary.BigEndian.Uint64(values[5]))
	return true
}

// defaultTimestamptz reports whether rows' connection reads timestamptz
// with pgx's codec as registered by default, into the local time zone,
// which is what decodeTimestamptz reproduces. A pool whose AfterConnect
// registers a codec with a ScanLocation gets pgx's Scan instead.
func defaultTimestamptz(rows pgx.Rows) bool {
	conn := rows.Conn()
	if conn == nil {
		return false
	}
	t, ok := conn.TypeMap().TypeForOID(pgtype.TimestamptzOID)
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

// scan is the general path: pgx's own Scan, for rows in text format.
func (r *recordRow) scan(rows pgx.Rows, data *[]byte) error {
	var (
		userID pgtype.Text
		idle   pgtype.Timestamptz
	)
	dest := []any{&userID, &r.rec.Persistent, &r.rec.Created, &r.rec.Expiry, &idle, &r.rec.Version, &r.rec.LoadedAt}
	if r.withData {
		dest = append([]any{data}, dest...)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	r.rec.UserID = userID.String // "" for NULL
	r.rec.IdleExpiry = time.Time{}
	if idle.Valid {
		r.rec.IdleExpiry = idle.Time
	}
	return nil
}

// decodeValues decodes the data column, a JSON object, into one RawMessage
// per key. The column's text comes from PostgreSQL's jsonb, so it is valid
// JSON without duplicate keys: a scanner that only finds where each value
// starts and ends does the job of json.Unmarshal at a fraction of its cost.
// Anything it does not expect goes to json.Unmarshal, which reports it.
// The values share one copy of data, each capped at its own end so that an
// append cannot run into its neighbour.
func decodeValues(data []byte) (map[string]json.RawMessage, error) {
	if values, ok := splitObject(data); ok {
		return values, nil
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("session: decode values of a stored session: %w", err)
	}
	if values == nil { // the JSON null
		values = map[string]json.RawMessage{}
	}
	return values, nil
}

// splitObject is decodeValues' scanner; it reports false for anything but
// an object whose keys are valid UTF-8.
func splitObject(data []byte) (map[string]json.RawMessage, bool) {
	buf := bytes.Clone(data)
	i := skipSpace(buf, 0)
	if i == len(buf) || buf[i] != '{' {
		return nil, false
	}
	values := make(map[string]json.RawMessage, 4)
	i = skipSpace(buf, i+1)
	if i < len(buf) && buf[i] == '}' {
		return values, skipSpace(buf, i+1) == len(buf)
	}
	for {
		end, ok := skipString(buf, i)
		if !ok {
			return nil, false
		}
		key, ok := decodeKey(buf[i:end])
		if !ok {
			return nil, false
		}
		i = skipSpace(buf, end)
		if i == len(buf) || buf[i] != ':' {
			return nil, false
		}
		start := skipSpace(buf, i+1)
		end, ok = skipValue(buf, start)
		if !ok {
			return nil, false
		}
		values[key] = json.RawMessage(buf[start:end:end])
		i = skipSpace(buf, end)
		switch {
		case i < len(buf) && buf[i] == ',':
			i = skipSpace(buf, i+1)
		case i < len(buf) && buf[i] == '}':
			return values, skipSpace(buf, i+1) == len(buf)
		default:
			return nil, false
		}
	}
}

// decodeKey returns the key a JSON string token spells; only a key with an
// escape goes through encoding/json.
func decodeKey(token []byte) (string, bool) {
	inner := token[1 : len(token)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), utf8.Valid(inner)
	}
	var key string
	if json.Unmarshal(token, &key) != nil || !utf8.Valid(token) {
		return "", false
	}
	return key, true
}

func skipSpace(buf []byte, i int) int {
	for i < len(buf) && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string token starting at i.
func skipString(buf []byte, i int) (int, bool) {
	if i >= len(buf) || buf[i] != '"' {
		return 0, false
	}
	for i++; i < len(buf); i++ {
		switch buf[i] {
		case '\\':
			i++ // the escaped character, which may be a quote
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the value starting at i: a string, an
// object or array with everything nested in it, or a literal or number.
func skipValue(buf []byte, i int) (int, bool) {
	if i >= len(buf) {
		return 0, false
	}
	switch buf[i] {
	case '"':
		return skipString(buf, i)
	case '{', '[':
		depth := 0
		for i < len(buf) {
			switch buf[i] {
			case '"':
				end, ok := skipString(buf, i)
				if !ok {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	case ',', '}', ']', ':':
		return 0, false
	}
	start := i
	for i < len(buf) && buf[i] != ',' && buf[i] != '}' && buf[i] != ']' &&
		buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r' {
		i++
	}
	return i, i > start
}
