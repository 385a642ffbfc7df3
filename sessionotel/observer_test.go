package sessionotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/sessionotel"
)

const secret = "sessionotel-test-secret-sessionotel-test"

// fixture is a Manager observed by a sessionotel Observer on a real SDK:
// a ManualReader for the metrics and a SpanRecorder for the spans, behind
// an httptest server whose requests carry a server span of their own.
type fixture struct {
	t      *testing.T
	m      *session.Manager
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	server *httptest.Server
	tracer trace.Tracer
	// secrets are the cookie values and store keys the test has seen.
	secretsMu sync.Mutex
	secrets   []string
}

func (f *fixture) saw(secrets ...string) {
	f.secretsMu.Lock()
	defer f.secretsMu.Unlock()
	f.secrets = append(f.secrets, secrets...)
}

func newFixture(t *testing.T, cfg session.Config, opts ...session.Option) *fixture {
	t.Helper()
	f := &fixture{t: t, reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f.spans))
	f.tracer = tp.Tracer("test-server")
	observer, err := sessionotel.New(
		sessionotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))),
		sessionotel.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secret == "" {
		cfg.Secret = secret
	}
	opts = append([]session.Option{
		session.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		session.WithObserver(observer),
		session.WithEvents(func(e session.Event) { f.saw(e.Session.Key) }),
	}, opts...)
	f.m, err = session.New(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.m.Close)
	f.server = httptest.NewServer(f.traced(f.m.Handler(routes())))
	t.Cleanup(f.server.Close)
	return f
}

// routes are what the tests make the Manager do.
func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /set", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Set("n", 1) // a failure is the error handler's
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		_, _ = session.Value[int](session.FromContext(r.Context()), "n")
	})
	mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).SetUser(r.FormValue("user"))
	})
	mux.HandleFunc("GET /signout", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Destroy()
	})
	return mux
}

// traced gives each request a server span, as otelhttp would, and notes
// the cookies it carried and set.
func (f *fixture) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range r.Cookies() {
			f.saw(c.Value)
		}
		ctx, span := f.tracer.Start(r.Context(), r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
		for _, line := range w.Header()["Set-Cookie"] {
			if c, err := http.ParseSetCookie(line); err == nil {
				f.saw(c.Value)
			}
		}
	})
}

// browser returns a client with a cookie jar of its own.
func (f *fixture) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// get fetches path with client and returns the response's status.
func (f *fixture) get(client *http.Client, path string) int {
	f.t.Helper()
	resp, err := client.Get(f.server.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// getWithCookie fetches path presenting cookie, and returns the cookie
// the response set, if any.
func (f *fixture) getWithCookie(path string, cookie *http.Cookie) *http.Cookie {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.server.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		return c
	}
	return nil
}

func (f *fixture) collect() metricdata.ResourceMetrics {
	f.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		f.t.Fatal(err)
	}
	return rm
}

// find returns the metric named name.
func find(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// counter is the value of counter name for exactly attrs, 0 if absent.
func counter(t *testing.T, rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := find(rm, name)
	if !ok {
		return 0
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic {
		t.Fatalf("%s is a %T, want a monotonic Sum[int64]", name, m.Data)
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	return 0
}

// calls is how many store calls the histogram counted for exactly attrs.
func calls(t *testing.T, rm metricdata.ResourceMetrics, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	m, ok := find(rm, "session.store.operation.duration")
	if !ok {
		return 0
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("session.store.operation.duration is a %T, want a Histogram[float64]", m.Data)
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Count
		}
	}
	return 0
}

func op(name string) attribute.KeyValue { return sessionotel.OperationKey.String(name) }

var errorType = attribute.Key("error.type")

func TestLifecycleCounters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, session.Config{MaxPerUser: 1})
	laptop, phone, other := f.browser(), f.browser(), f.browser()

	f.get(laptop, "/set")              // created
	f.get(laptop, "/signin?user=ada")  // renewed, signed in
	f.get(phone, "/signin?user=ada")   // created, renewed, signed in; the laptop's evicted
	f.get(other, "/signin?user=grace") // created, renewed, signed in
	f.get(phone, "/get")               // a load, nothing else
	f.get(phone, "/signout")           // destroyed
	if n, err := f.m.RevokeUser(context.Background(), "grace"); n != 1 || err != nil {
		t.Fatalf("RevokeUser = %d, %v; want 1 session revoked", n, err)
	}

	rm := f.collect()
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"session.created", nil, 3},
		{"session.renewed", nil, 1}, // the others signed in on a new session
		{"session.signed_in", nil, 3},
		{"session.ended", []attribute.KeyValue{sessionotel.EndReasonKey.String("evicted")}, 1},
		{"session.ended", []attribute.KeyValue{sessionotel.EndReasonKey.String("destroyed")}, 1},
		{"session.ended", []attribute.KeyValue{sessionotel.EndReasonKey.String("revoked")}, 1},
		{"session.ended", []attribute.KeyValue{sessionotel.EndReasonKey.String("expired")}, 0},
	} {
		if got := counter(t, rm, c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %d, want %d", c.name, c.attrs, got, c.want)
		}
	}
	for _, name := range []string{"insert", "load", "destroy", "destroy-user", "trim-user"} {
		if calls(t, rm, op(name)) == 0 {
			t.Errorf("no successful %s store call was measured", name)
		}
	}
	f.checkNoSecrets(rm)
}

// clock is a clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestExpiredByPruning(t *testing.T) {
	t.Parallel()
	clock := newClock()
	f := newFixture(t, session.Config{Lifetime: time.Hour, PruneInterval: 10 * time.Millisecond}, session.WithClock(clock.Now))
	f.get(f.browser(), "/set")
	clock.Add(2 * time.Hour)

	// The prune loop runs on real time, every 10ms or so: wait for it.
	expired := sessionotel.EndReasonKey.String("expired")
	deadline := time.Now().Add(10 * time.Second)
	var rm metricdata.ResourceMetrics
	for {
		rm = f.collect()
		if counter(t, rm, "session.ended", expired) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := counter(t, rm, "session.ended", expired); got != 1 {
		t.Errorf("session.ended{expired} = %d, want 1", got)
	}
	// A collection runs beside the prune loop and reads one instrument
	// after another, so the snapshot that first saw the event may predate
	// the store call's measurement, which was recorded just before it. A
	// collection started after that snapshot sees both.
	rm = f.collect()
	if calls(t, rm, op("prune")) == 0 {
		t.Error("no prune store call was measured")
	}
}

func TestTokensRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reason string
		// cookie returns the cookie to present to f.
		cookie func(t *testing.T, f *fixture) *http.Cookie
	}{
		{"malformed", func(*testing.T, *fixture) *http.Cookie {
			return &http.Cookie{Name: "session", Value: "not-a-signed-value"}
		}},
		{"signature", func(t *testing.T, _ *fixture) *http.Cookie {
			other := newFixture(t, session.Config{Secret: "another-secret-another-secret-another"})
			return other.getWithCookie("/set", nil)
		}},
		{"expired", func(t *testing.T, f *fixture) *http.Cookie {
			cookie := f.getWithCookie("/set", nil)
			// The signature's timestamp is in whole seconds of the wall
			// clock, which WithClock does not move: 2 seconds later it is
			// past the lifetime of 1 whatever the rounding.
			signed := time.Now().Unix()
			for time.Now().Unix() < signed+2 {
				time.Sleep(50 * time.Millisecond)
			}
			return cookie
		}},
		{"unknown", func(_ *testing.T, f *fixture) *http.Cookie {
			cookie := f.getWithCookie("/set", nil)
			f.getWithCookie("/signout", cookie)
			return cookie
		}},
	} {
		t.Run(c.reason, func(t *testing.T) {
			t.Parallel()
			lifetime := time.Hour
			if c.reason == "expired" {
				lifetime = time.Second
			}
			f := newFixture(t, session.Config{Lifetime: lifetime})
			cookie := c.cookie(t, f)
			if cookie == nil {
				t.Fatal("no cookie to present")
			}
			f.getWithCookie("/get", cookie)

			rm := f.collect()
			for _, reason := range []string{"malformed", "signature", "expired", "unknown"} {
				want := int64(0)
				if reason == c.reason {
					want = 1
				}
				if got := counter(t, rm, "session.token.refused", sessionotel.RefusalReasonKey.String(reason)); got != want {
					t.Errorf("session.token.refused{%s} = %d, want %d", reason, got, want)
				}
			}
			f.checkNoSecrets(rm)
		})
	}
}

func mustParse(t *testing.T, rawURL string) *neturl.URL {
	t.Helper()
	u, err := neturl.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// downStore is a store that cannot be reached.
type downStore struct{}

var errDown = fmt.Errorf("dial tcp 127.0.0.1:5432: connection refused: %w", session.ErrUnavailable)

func (downStore) Load(context.Context, string) (*session.Record, error) { return nil, errDown }
func (downStore) Insert(context.Context, string, *session.Record) error { return errDown }
func (downStore) Apply(context.Context, string, session.Change) (*session.Record, error) {
	return nil, errDown
}
func (downStore) Rekey(context.Context, string, string, session.Change, *session.Record) (*session.Record, error) {
	return nil, errDown
}
func (downStore) Modify(context.Context, string, func(*session.Record) error) (*session.Record, error) {
	return nil, errDown
}
func (downStore) Destroy(context.Context, string) (*session.Info, error) { return nil, errDown }

func TestStoreOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, session.Config{}, session.WithStore(downStore{}))
	if status := f.get(f.browser(), "/set"); status != http.StatusServiceUnavailable {
		t.Fatalf("a new session: status %d, want 503", status)
	}
	// A cookie signed with the same secret, as another instance on the
	// same store issued it before the outage.
	cookie := newFixture(t, session.Config{}).getWithCookie("/set", nil)
	f.saw(cookie.Value)
	browser := f.browser()
	browser.Jar.SetCookies(mustParse(t, f.server.URL), []*http.Cookie{cookie})
	if status := f.get(browser, "/get"); status != http.StatusServiceUnavailable {
		t.Fatalf("a stored session: status %d, want 503", status)
	}

	rm := f.collect()
	status := attribute.Key("http.response.status_code")
	if got := counter(t, rm, "session.error_handler.responses", status.Int(503)); got != 2 {
		t.Errorf("session.error_handler.responses{503} = %d, want 2", got)
	}
	for _, name := range []string{"insert", "load"} {
		if got := calls(t, rm, op(name), errorType.String("unavailable")); got != 1 {
			t.Errorf("%s calls with error.type=unavailable = %d, want 1", name, got)
		}
		if got := calls(t, rm, op(name)); got != 0 {
			t.Errorf("%d failed %s calls were measured as successes", got, name)
		}
	}

	spans := f.storeSpans()
	if len(spans) != 2 {
		t.Fatalf("%d store spans, want 2 (the insert and the load)", len(spans))
	}
	for _, span := range spans {
		if span.Status().Code != codes.Error {
			t.Errorf("%s has status %v, want an error", span.Name(), span.Status())
		}
		if !slices.Contains(span.Attributes(), errorType.String("unavailable")) {
			t.Errorf("%s: attributes %v lack error.type=unavailable", span.Name(), span.Attributes())
		}
		if !slices.ContainsFunc(span.Events(), func(e sdktrace.Event) bool { return e.Name == "exception" }) {
			t.Errorf("%s: events %v lack the recorded error", span.Name(), span.Events())
		}
	}
	f.checkNoSecrets(rm)
}

func TestStoreSpans(t *testing.T) {
	t.Parallel()
	f := newFixture(t, session.Config{})
	browser := f.browser()
	f.get(browser, "/set")
	f.get(browser, "/signin?user=ada")
	f.get(browser, "/get")
	f.get(browser, "/signout")

	servers := map[trace.SpanID]bool{}
	for _, s := range f.spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			servers[s.SpanContext().SpanID()] = true
		}
	}
	var names []string
	for _, s := range f.storeSpans() {
		names = append(names, s.Name())
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s is a %v span, want client", s.Name(), s.SpanKind())
		}
		if !servers[s.Parent().SpanID()] {
			t.Errorf("%s is not a child of its request's span", s.Name())
		}
		want := strings.TrimPrefix(s.Name(), "session.store ")
		if !slices.Contains(s.Attributes(), op(want)) || s.Status().Code == codes.Error {
			t.Errorf("%s: attributes %v, status %v; want session.store.operation=%s and no error", s.Name(), s.Attributes(), s.Status(), want)
		}
	}
	for _, want := range []string{"session.store insert", "session.store rekey", "session.store load", "session.store destroy"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s span among %v", want, names)
		}
	}
	f.checkNoSecrets(f.collect())
}

// storeSpans are the ended spans of store calls.
func (f *fixture) storeSpans() []sdktrace.ReadOnlySpan {
	var spans []sdktrace.ReadOnlySpan
	for _, s := range f.spans.Ended() {
		if strings.HasPrefix(s.Name(), "session.store ") {
			spans = append(spans, s)
		}
	}
	return spans
}

// allowed lists every attribute the package may set, with every value it
// may take: nothing else, so no token, key, user ID or IP can get in.
var allowed = map[attribute.Key][]string{
	sessionotel.OperationKey:     {"load", "insert", "apply", "touch", "rekey", "modify", "destroy", "list-user", "destroy-user", "trim-user", "prune"},
	errorType:                    {"timeout", "canceled", "unavailable", "too_large", "conflict", "corrupt", "_OTHER"},
	sessionotel.EndReasonKey:     {"destroyed", "revoked", "evicted", "expired"},
	sessionotel.RefusalReasonKey: {"malformed", "signature", "expired", "unknown"},
	"http.response.status_code":  {"413", "500", "503"},
	// A recorded error's type and message: any value, but no secret.
	"exception.type":    nil,
	"exception.message": nil,
}

// checkNoSecrets fails if an attribute of a metric or a store span is not
// one the package documents, or if any holds a cookie's value or a store
// key seen by the test.
func (f *fixture) checkNoSecrets(rm metricdata.ResourceMetrics) {
	f.t.Helper()
	f.m.Close() // tells the events queued, so every store key is seen
	f.secretsMu.Lock()
	secrets := slices.Clone(f.secrets)
	f.secretsMu.Unlock()
	if len(secrets) == 0 {
		f.t.Fatal("the test saw no cookie and no store key to look for")
	}
	check := func(where string, kv attribute.KeyValue) {
		value := kv.Value.String()
		values, ok := allowed[kv.Key]
		switch {
		case !ok:
			f.t.Errorf("%s: unexpected attribute %s=%q", where, kv.Key, value)
		case values != nil && !slices.Contains(values, value):
			f.t.Errorf("%s: attribute %s has the unexpected value %q", where, kv.Key, value)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(value, s) {
				f.t.Errorf("%s: attribute %s holds a token or store key: %q", where, kv.Key, value)
			}
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var sets []attribute.Set
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Gauge[int64]:
				for _, dp := range data.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			default:
				f.t.Errorf("%s: unexpected %T", m.Name, m.Data)
			}
			for _, set := range sets {
				for _, kv := range set.ToSlice() {
					check(m.Name, kv)
				}
			}
		}
	}
	for _, s := range f.storeSpans() {
		for _, kv := range s.Attributes() {
			check(s.Name(), kv)
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				check(s.Name()+" event "+e.Name, kv)
			}
		}
	}
}

// observedCounts wraps an Observer to count how often the Manager's count
// of live sessions runs.
type observedCounts struct {
	*sessionotel.Observer
	counts atomic.Int64
}

func (o *observedCounts) LiveSessions(count func(context.Context) (int64, error)) {
	o.Observer.LiveSessions(func(ctx context.Context) (int64, error) {
		o.counts.Add(1)
		return count(ctx)
	})
}

func TestLiveSessions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		interval time.Duration
		// wantLater is the gauge after a fourth session, and wantCounts
		// how many counts were made for the two collections.
		wantLater, wantCounts int64
	}{
		{"cached", time.Hour, 3, 1},
		{"every collection", 0, 4, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reader := sdkmetric.NewManualReader()
			inner, err := sessionotel.New(
				sessionotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
				sessionotel.WithCountInterval(c.interval))
			if err != nil {
				t.Fatal(err)
			}
			observer := &observedCounts{Observer: inner}
			m, err := session.New(context.Background(), session.Config{Secret: secret}, session.WithObserver(observer))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			f := &fixture{t: t, m: m, reader: reader, server: httptest.NewServer(m.Handler(routes()))}
			defer f.server.Close()

			live := func() int64 {
				t.Helper()
				m, ok := find(f.collect(), "session.live")
				if !ok {
					t.Fatal("no session.live gauge")
				}
				gauge, ok := m.Data.(metricdata.Gauge[int64])
				if !ok || len(gauge.DataPoints) != 1 {
					t.Fatalf("session.live is %#v, want one gauge point", m.Data)
				}
				return gauge.DataPoints[0].Value
			}
			for range 3 {
				f.get(f.browser(), "/set")
			}
			if n := observer.counts.Load(); n != 0 {
				t.Fatalf("%d requests made %d counts of live sessions; want none before a collection", 3, n)
			}
			if got := live(); got != 3 {
				t.Errorf("session.live = %d, want 3", got)
			}
			f.get(f.browser(), "/set")
			if got := live(); got != c.wantLater {
				t.Errorf("after a fourth session, session.live = %d, want %d", got, c.wantLater)
			}
			if n := observer.counts.Load(); n != c.wantCounts {
				t.Errorf("two collections made %d counts, want %d", n, c.wantCounts)
			}
		})
	}
}

// A failed count is reported to OpenTelemetry's error handler and leaves
// the gauge without a value, rather than a stale one.
func TestLiveSessionsCountFails(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	observer, err := sessionotel.New(sessionotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		t.Fatal(err)
	}
	observer.LiveSessions(func(context.Context) (int64, error) { return 0, errDown })
	var rm metricdata.ResourceMetrics
	err = reader.Collect(context.Background(), &rm)
	if !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Collect = %v, want the count's error", err)
	}
	if m, ok := find(rm, "session.live"); ok {
		if gauge, _ := m.Data.(metricdata.Gauge[int64]); len(gauge.DataPoints) != 0 {
			t.Errorf("session.live has %v after a failed count, want no value", gauge.DataPoints)
		}
	}
}
