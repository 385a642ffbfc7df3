package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// appointment is one entry in a user's schedule.
type appointment struct {
	Title  string
	Starts time.Time
}

// appointmentStore keeps each user's appointments. They are the app's own
// data, so they live in the app's database, not in the session: a session
// is one device's sign-in and ends at sign-out, while the schedule must be
// the same on every device and outlive them all.
type appointmentStore interface {
	Add(ctx context.Context, userID string, a appointment) error
	// List returns the user's appointments, earliest first.
	List(ctx context.Context, userID string) ([]appointment, error)
}

// memoryAppointments is the store for development on the in-memory session
// store: both forget everything when the process stops.
type memoryAppointments struct {
	mu     sync.Mutex
	byUser map[string][]appointment
}

func newMemoryAppointments() *memoryAppointments {
	return &memoryAppointments{byUser: map[string][]appointment{}}
}

func (m *memoryAppointments) Add(_ context.Context, userID string, a appointment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byUser[userID] = append(m.byUser[userID], a)
	return nil
}

func (m *memoryAppointments) List(_ context.Context, userID string) ([]appointment, error) {
	m.mu.Lock()
	list := slices.Clone(m.byUser[userID])
	m.mu.Unlock()
	slices.SortStableFunc(list, func(a, b appointment) int { return a.Starts.Compare(b.Starts) })
	return list, nil
}

// postgresAppointments keeps appointments in a table beside the session
// table, on the session store's connection pool.
type postgresAppointments struct {
	pool      *pgxpool.Pool
	add, list string
}

// newPostgresAppointments creates the table in schema if it is missing. A
// real app would put this in its own migrations; one CREATE ... IF NOT
// EXISTS keeps the example self-contained.
func newPostgresAppointments(ctx context.Context, pool *pgxpool.Pool, schema string) (*postgresAppointments, error) {
	table := pgx.Identifier{schema, "scheduler_appointment"}.Sanitize()
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    text        NOT NULL,
    title      text        NOT NULL,
    starts_at  timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scheduler_appointment_user_idx ON `+table+` (user_id, starts_at)`)
	if err != nil {
		return nil, fmt.Errorf("create the appointment table %s: %w", table, err)
	}
	return &postgresAppointments{
		pool: pool,
		add:  "INSERT INTO " + table + " (user_id, title, starts_at) VALUES ($1, $2, $3)",
		list: "SELECT title, starts_at FROM " + table + " WHERE user_id = $1 ORDER BY starts_at, id",
	}, nil
}

func (p *postgresAppointments) Add(ctx context.Context, userID string, a appointment) error {
	if _, err := p.pool.Exec(ctx, p.add, userID, a.Title, a.Starts); err != nil {
		return fmt.Errorf("add appointment: %w", err)
	}
	return nil
}

func (p *postgresAppointments) List(ctx context.Context, userID string) ([]appointment, error) {
	rows, err := p.pool.Query(ctx, p.list, userID)
	if err != nil {
		return nil, fmt.Errorf("list appointments: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (appointment, error) {
		var a appointment
		err := row.Scan(&a.Title, &a.Starts)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list appointments: %w", err)
	}
	return list, nil
}
