package sessionotel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/sessionotel"
)

// discardWriter is a ResponseWriter that keeps headers and drops the body,
// so the benchmark measures the middleware, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkObserver is the root package's BenchmarkMiddleware (which,
// being inside package session, cannot import this package) on its read
// and write paths, without an Observer and with one on a real SDK: a
// MeterProvider with a ManualReader, and for "spans" a TracerProvider
// sampling every span. Compare the observers with
// benchstat -col /observer.
func BenchmarkObserver(b *testing.B) {
	type user struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	paths := []struct {
		name    string
		handler func(*session.Session)
	}{
		{"read", func(s *session.Session) {
			if _, err := session.Value[user](s, "user"); err != nil {
				panic(err)
			}
		}},
		{"write", func(s *session.Session) {
			if err := s.Set("n", 1); err != nil {
				panic(err)
			}
		}},
	}
	observers := []struct {
		name string
		opts func() []session.Option
	}{
		{"off", func() []session.Option { return nil }},
		{"metrics", func() []session.Option {
			return []session.Option{session.WithObserver(newBenchObserver(b))}
		}},
		{"spans", func() []session.Option {
			return []session.Option{session.WithObserver(newBenchObserver(b,
				sessionotel.WithTracerProvider(sdktrace.NewTracerProvider())))}
		}},
	}
	for _, p := range paths {
		for _, o := range observers {
			b.Run("path="+p.name+"/observer="+o.name, func(b *testing.B) {
				m, cookie := benchManager(b, o.opts()...)
				h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					p.handler(session.FromContext(r.Context()))
				}))
				r := httptest.NewRequest("GET", "/", nil)
				r.AddCookie(cookie)
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					h.ServeHTTP(w, r)
				}
			})
		}
	}
}

func newBenchObserver(b *testing.B, opts ...sessionotel.Option) *sessionotel.Observer {
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	o, err := sessionotel.New(append(opts, sessionotel.WithMeterProvider(provider))...)
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// benchManager returns a Manager on the memory store and a cookie for a
// stored session holding a small value, as the root package's does.
func benchManager(b *testing.B, opts ...session.Option) (*session.Manager, *http.Cookie) {
	b.Helper()
	m, err := session.New(context.Background(), session.Config{Secret: "benchmark-secret-benchmark-secret-0123"}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Set("user", map[string]any{"id": 42, "name": "Ada"}); err != nil {
			b.Fatal(err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		b.Fatalf("got %d cookies, want 1", len(cookies))
	}
	return m, cookies[0]
}
