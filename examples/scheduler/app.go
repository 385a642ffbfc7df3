package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/migrations"
)

//go:embed templates/*.html static/*
var assets embed.FS

// app is the Smart Scheduler: its session manager, its data and its pages.
type app struct {
	sessions     *session.Manager
	appointments appointmentStore
	users        map[string]user
	pages        map[string]*template.Template
	logger       *slog.Logger
	location     *time.Location // where the form's dates and times are
	metrics      *metrics       // metrics.go: the session metrics on GET /metrics
	close        func()
}

// newApp builds the app on the session store cfg selects. With
// PostgreSQL, sessions and appointments share one connection pool and one
// schema, so every instance (and every restart) sees the same of both.
// Close releases what newApp opened.
func newApp(ctx context.Context, cfg session.Config, logger *slog.Logger) (*app, error) {
	a := &app{users: demoUsers, logger: logger, location: time.Local, pages: map[string]*template.Template{}}
	for _, page := range []string{"signin.html", "schedule.html", "sessions.html"} {
		t, err := template.New("").Funcs(templateFuncs).ParseFS(assets, "templates/layout.html", "templates/"+page)
		if err != nil {
			return nil, err
		}
		a.pages[page] = t
	}
	var err error
	if a.metrics, err = newMetrics(); err != nil { // metrics.go
		return nil, err
	}
	options := []session.Option{session.WithLogger(logger), session.WithEvents(a.logSignIn), session.WithObserver(a.metrics.observer)}
	if !cfg.UsePostgres {
		sessions, err := session.New(ctx, cfg, options...)
		if err != nil {
			return nil, err
		}
		a.sessions, a.appointments, a.close = sessions, newMemoryAppointments(), sessions.Close
		return a, nil
	}

	// The pool is opened here rather than by session.New so that the
	// appointments can use it too; New then takes the store WithStore.
	timeout := cfg.StoreTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	openCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pool, schema, err := openPool(openCtx, cfg, timeout)
	if err != nil {
		return nil, err
	}
	store, err := session.NewPostgresStore(openCtx, pool, session.PostgresOptions{Table: cfg.Table, ManualMigrations: cfg.ManualMigrations})
	if err == nil {
		a.appointments, err = newPostgresAppointments(openCtx, pool, schema)
	}
	if err == nil && cfg.Secret == "" && !cfg.Production {
		cfg.Secret, err = developmentSecret(openCtx, pool, schema)
		logger.Warn("SESSION_SECRET is not set: signing cookies with a development secret kept in the database, so sign-ins survive restarts; production refuses to start without SESSION_SECRET (run `sessionctl secret`)")
	}
	if err == nil {
		a.sessions, err = session.New(ctx, cfg, append(options, session.WithStore(store))...)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	a.close = func() {
		a.sessions.Close()
		pool.Close()
	}
	return a, nil
}

// logSignIn logs each sign-in with the device it came from, as a "new
// sign-in" notice to the user would say it. It names no user and no
// address: the log keeps nothing personal.
func (a *app) logSignIn(e session.Event) {
	if e.Kind == "signed-in" {
		a.logger.Info("new sign-in from " + deviceName(e.Session.UserAgent))
	}
}

// openPool connects to cfg's database within timeout and returns the pool
// with the schema the session table lives in.
func openPool(ctx context.Context, cfg session.Config, timeout time.Duration) (*pgxpool.Pool, string, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, "", errors.New("DATABASE_URL is not a valid PostgreSQL connection string")
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = timeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, "", err
	}
	name := cfg.Table
	if name == "" {
		name = migrations.DefaultTable
	}
	table, err := migrations.ParseTable(name)
	if err == nil {
		table, err = table.Resolve(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("connect to PostgreSQL at %s: %w", pc.ConnConfig.Host, err)
	}
	return pool, table.Schema, nil
}

// developmentSecret returns the secret stored in the database, storing a
// new one first if there is none. Without it a development setup on
// PostgreSQL would sign everyone out at each restart: the library's
// fallback secret lives only as long as the process.
func developmentSecret(ctx context.Context, pool *pgxpool.Pool, schema string) (string, error) {
	table := pgx.Identifier{schema, "scheduler_development_secret"}.Sanitize()
	random := make([]byte, 32)
	rand.Read(random) // never fails: crypto/rand crashes rather than return weak bytes
	candidate := base64.RawURLEncoding.EncodeToString(random)
	var secret string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), secret text NOT NULL)"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (secret) VALUES ($1) ON CONFLICT DO NOTHING", candidate); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT secret FROM "+table).Scan(&secret)
	})
	if err != nil {
		return "", fmt.Errorf("keep a development secret in %s (or set SESSION_SECRET): %w", table, err)
	}
	return secret, nil
}

// Close ends background work and closes the database pool. Call it after
// the HTTP server has drained its requests.
func (a *app) Close() { a.close() }

// Handler returns the app's routes behind its middleware: security
// headers, then cross-origin protection (CSRF: a browser's POST from
// another site is refused before any session is touched), then sessions.
func (a *app) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static") // the directory is embedded, so Sub cannot fail
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", a.schedule)
	mux.HandleFunc("POST /appointments", a.addAppointment)
	mux.HandleFunc("GET /signin", a.signInPage)
	mux.HandleFunc("POST /signin", a.signIn)
	mux.HandleFunc("POST /signout", a.signOut)
	mux.HandleFunc("POST /signout-everywhere", a.signOutEverywhere)
	mux.HandleFunc("GET /sessions", a.sessionsPage)
	mux.HandleFunc("POST /sessions/revoke", a.revokeSession)
	mux.HandleFunc("POST /sessions/revoke-others", a.revokeOthers)
	mux.Handle("GET /metrics", a.metrics.handler) // metrics.go
	return securityHeaders(http.NewCrossOriginProtection().Handler(a.sessions.Handler(mux)))
}

// securityHeaders keeps the pages out of frames and caches, and allows no
// script but the app's own files (one: static/localtime.js).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store") // pages show one user's data
		}
		next.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title   string
	User    *user
	Flashes []string
	Error   string

	// The sign-in form.
	Username string
	Accounts []string

	// The schedule.
	Appointments []appointment
	Now          time.Time
	Form         appointmentForm

	// The sessions page.
	Devices []device
}

// device is one row of the sessions page: one of the user's sessions.
type device struct {
	Key       string // for RevokeSession
	Name      string // "Firefox 128 on Windows"
	UserAgent string // as the browser sent it, for the curious
	IP        string
	// LastActive is how long ago it was last used, "5 minutes ago",
	// accurate to the library's touch interval (5 minutes by default).
	LastActive string
	SignedIn   time.Time
	Current    bool
}

type appointmentForm struct{ Title, Date, Time string }

var templateFuncs = template.FuncMap{
	"when": func(t time.Time) string { return t.Format("Mon 2 Jan 2006, 15:04") },
	// The server cannot know the viewer's time zone, so it writes a moment
	// in UTC, saying so, beside the machine-readable time that
	// static/localtime.js shows in the browser's own zone.
	"utc":      func(t time.Time) string { return t.UTC().Format("Mon 2 Jan 2006, 15:04 UTC") },
	"datetime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

func (a *app) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if p.Flashes == nil {
		flashes, err := session.FromContext(r.Context()).Flashes()
		if err != nil {
			a.fail(w, r, err)
			return
		}
		p.Flashes = flashes
	}
	var b strings.Builder
	if err := a.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// fail answers a request whose work failed: 503 when the database is
// unreachable, so clients and balancers retry, else 500.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, session.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusServiceUnavailable
	}
	a.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, http.StatusText(status), status)
}

// currentUser returns the signed-in user, or redirects to the sign-in page.
func (a *app) currentUser(w http.ResponseWriter, r *http.Request) (*user, bool) {
	id, err := session.FromContext(r.Context()).UserID()
	if err != nil {
		a.fail(w, r, err)
		return nil, false
	}
	if u, ok := a.users[id]; ok {
		return &u, true
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil, false
}

func (a *app) signInPage(w http.ResponseWriter, r *http.Request) {
	// Only a user who still exists is sent on: a session of a deleted
	// account would otherwise bounce between here and "/".
	id, err := session.FromContext(r.Context()).UserID()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, ok := a.users[id]; ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	a.render(w, r, http.StatusOK, "signin.html", page{Title: "Sign in", Accounts: demoAccounts()})
}

func demoAccounts() []string {
	var names []string
	for id := range demoUsers {
		names = append(names, id)
	}
	slices.Sort(names)
	return names
}

func (a *app) signIn(w http.ResponseWriter, r *http.Request) {
	name := r.PostFormValue("username")
	u, ok := authenticate(a.users, name, r.PostFormValue("password"))
	if !ok {
		a.render(w, r, http.StatusUnauthorized, "signin.html", page{
			Title: "Sign in", Error: "Wrong username or password.", Username: name, Accounts: demoAccounts(),
		})
		return
	}
	s := session.FromContext(r.Context())
	// A new token at sign-in: a token planted before it (session
	// fixation) is worthless afterwards. SetUser lets RevokeUser and
	// UserSessions find this session.
	if err := errors.Join(s.Renew(), s.SetUser(u.ID), s.AddFlash("Welcome, "+u.Name+".")); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *app) signOut(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if err := s.Destroy(); err != nil {
		a.fail(w, r, err)
		return
	}
	// Destroy leaves a fresh, empty session, which carries this message.
	if err := s.AddFlash("You have signed out."); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func (a *app) signOutEverywhere(w http.ResponseWriter, r *http.Request) {
	u, ok := a.currentUser(w, r)
	if !ok {
		return
	}
	n, err := a.sessions.RevokeUser(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	s := session.FromContext(r.Context())
	// RevokeUser deleted this session too; Destroy makes the response
	// clear its cookie.
	if err := errors.Join(s.Destroy(), s.AddFlash(fmt.Sprintf("Signed out of %s on all your devices.", plural(n, "session")))); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func (a *app) schedule(w http.ResponseWriter, r *http.Request) {
	u, ok := a.currentUser(w, r)
	if !ok {
		return
	}
	a.renderSchedule(w, r, u, http.StatusOK, appointmentForm{}, "")
}

func (a *app) renderSchedule(w http.ResponseWriter, r *http.Request, u *user, status int, form appointmentForm, problem string) {
	list, err := a.appointments.List(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.render(w, r, status, "schedule.html", page{
		Title: "Your schedule", User: u, Appointments: list, Now: time.Now(), Form: form, Error: problem,
	})
}

func (a *app) addAppointment(w http.ResponseWriter, r *http.Request) {
	u, ok := a.currentUser(w, r)
	if !ok {
		return
	}
	form := appointmentForm{
		Title: strings.TrimSpace(r.PostFormValue("title")),
		Date:  r.PostFormValue("date"),
		Time:  r.PostFormValue("time"),
	}
	starts, err := time.ParseInLocation("2006-01-02 15:04", form.Date+" "+form.Time, a.location)
	switch {
	case form.Title == "" || len(form.Title) > 200:
		a.renderSchedule(w, r, u, http.StatusUnprocessableEntity, form, "Give the appointment a title of at most 200 characters.")
		return
	case err != nil:
		a.renderSchedule(w, r, u, http.StatusUnprocessableEntity, form, "Give the appointment a date and a time.")
		return
	}
	if err := a.appointments.Add(r.Context(), u.ID, appointment{Title: form.Title, Starts: starts}); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := session.FromContext(r.Context()).AddFlash(fmt.Sprintf("Added “%s” on %s.", form.Title, starts.Format("Mon 2 Jan 2006 at 15:04"))); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *app) sessionsPage(w http.ResponseWriter, r *http.Request) {
	u, ok := a.currentUser(w, r)
	if !ok {
		return
	}
	infos, err := a.sessions.UserSessions(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := time.Now()
	devices := make([]device, 0, len(infos))
	for _, info := range infos {
		d := device{
			Key: info.Key, Name: deviceName(info.UserAgent), UserAgent: info.UserAgent, IP: info.IP,
			LastActive: ago(now, info.LastSeen), SignedIn: info.Created, Current: info.Current,
		}
		if d.Current {
			d.LastActive = "just now" // this request; LastSeen moves only every few minutes
		}
		devices = append(devices, d)
	}
	// This device first, then the others, newest sign-in first.
	slices.SortStableFunc(devices, func(x, y device) int {
		switch {
		case x.Current == y.Current:
			return 0
		case x.Current:
			return -1
		}
		return 1
	})
	a.render(w, r, http.StatusOK, "sessions.html", page{Title: "Your sessions", User: u, Devices: devices})
}

// revokeSession signs out one of the user's other sessions. The key comes
// from the form, so it is checked against the user's own sessions: one
// user must not end another's.
func (a *app) revokeSession(w http.ResponseWriter, r *http.Request) {
	u, ok := a.currentUser(w, r)
	if !ok {
		return
	}
	key := r.PostFormValue("key")
	infos, err := a.sessions.UserSessions(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	message := "That session had already ended."
	if slices.ContainsFunc(infos, func(i session.Info) bool { return i.Key == key }) {
		if err := a.sessions.RevokeSession(r.Context(), key); err != nil {
			a.fail(w, r, err)
			return
		}
		message = "Signed out that session."
	}
	if err := session.FromContext(r.Context()).AddFlash(message); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}

// revokeOthers signs out every session of the user but this one.
func (a *app) revokeOthers(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.currentUser(w, r); !ok {
		return
	}
	s := session.FromContext(r.Context())
	n, err := s.RevokeOthers()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := s.AddFlash(fmt.Sprintf("Signed out of %s.", plural(n, "other session"))); err != nil {
		a.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}
