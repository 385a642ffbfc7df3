package sessionotel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/smartscheduler/session"
)

// ScopeName is the instrumentation scope of the meter and tracer: the
// import path, as OpenTelemetry recommends.
const ScopeName = "github.com/smartscheduler/session/sessionotel"

// The attributes this package sets, besides the semantic conventions'
// error.type and http.response.status_code.
const (
	// OperationKey names the store call: load, insert, apply, touch, rekey,
	// modify, destroy, list-user, destroy-user, trim-user or prune (see
	// session.Observer.StoreCall).
	OperationKey = attribute.Key("session.store.operation")
	// EndReasonKey says how a session ended: destroyed, revoked, evicted or
	// expired (see session.Event.Kind).
	EndReasonKey = attribute.Key("session.end.reason")
	// RefusalReasonKey says why a token was refused: malformed, signature,
	// expired or unknown (see session.Observer.TokenRefused).
	RefusalReasonKey = attribute.Key("session.token.refusal.reason")
)

// storeOperations are the operations session.Observer.StoreCall names,
// whose attributes are built once, in New.
var storeOperations = []string{"load", "insert", "apply", "touch", "rekey", "modify", "destroy", "list-user", "destroy-user", "trim-user", "prune"}

// The error.type values of a failed store call, most specific first: a
// PostgreSQL timeout is both a timeout and the store being unavailable.
// A call that found no session (session.ErrNotFound) did not fail: that
// is an expired or ended session, which session.token.refused counts.
var errorTypes = [...]struct {
	err  error
	name string
}{
	{context.DeadlineExceeded, "timeout"},
	{context.Canceled, "canceled"},
	{session.ErrUnavailable, "unavailable"},
	{session.ErrTooLarge, "too_large"},
	{session.ErrConflict, "conflict"},
	{session.ErrCorrupt, "corrupt"},
}

// outcomes counts a store call's outcomes: success, each of errorTypes, and
// semconv's _OTHER for any other error.
const outcomes = 1 + len(errorTypes) + 1

// outcome indexes a store call's result in an operation's attributes.
func outcome(err error) int {
	if err == nil || errors.Is(err, session.ErrNotFound) {
		return 0
	}
	for i, t := range errorTypes {
		if errors.Is(err, t.err) {
			return 1 + i
		}
	}
	return outcomes - 1
}

// outcomeName is the error.type of outcome i; "" for a success.
func outcomeName(i int) string {
	switch {
	case i == 0:
		return ""
	case i <= len(errorTypes):
		return errorTypes[i-1].name
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// durationBuckets are the histogram's bucket bounds in seconds: from a
// memory store's tens of microseconds, through PostgreSQL's milliseconds,
// to the 5-second default SESSION_STORE_TIMEOUT and beyond.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// DefaultCountInterval is how long a count of live sessions is reused when
// WithCountInterval does not say.
const DefaultCountInterval = 30 * time.Second

// countTimeout bounds one count of live sessions, so that a store that
// hangs cannot hang the collection of every other metric with it.
const countTimeout = 5 * time.Second

var _ session.Observer = (*Observer)(nil)

// Observer implements session.Observer with OpenTelemetry instruments. Build
// it with New and give it to one Manager with session.WithObserver. It is
// safe for concurrent use, and allocates nothing on a request's path unless
// spans are on.
type Observer struct {
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
	countInterval  time.Duration

	duration                  metric.Float64Histogram
	created, renewed, signIns metric.Int64Counter
	ended, refused, responses metric.Int64Counter

	tracer     trace.Tracer // nil without WithTracerProvider
	operations map[string]*operation
	// unforeseen holds the operations a newer session package may name
	// that storeOperations does not list yet.
	unforeseen sync.Map
	// calls recycles the state of finished store calls, so StoreCall
	// allocates nothing.
	calls sync.Pool

	endReasons map[string][]metric.AddOption
	refusals   map[string][]metric.AddOption
	statuses   map[int][]metric.AddOption

	live liveCount
}

// operation is what a store call's measurements need, built once per
// operation.
type operation struct {
	spanName  string
	spanStart []trace.SpanStartOption
	// record holds the histogram's options for each outcome.
	record [][]metric.RecordOption
	// errorType holds the span attribute for each failed outcome.
	errorType []attribute.KeyValue
}

// Option configures an Observer.
type Option func(*Observer)

// WithMeterProvider makes the Observer create its instruments with mp. The
// default is the global MeterProvider, otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *Observer) { o.meterProvider = mp }
}

// WithTracerProvider turns spans on: one span per store call, of kind
// client, a child of the span in the call's context (the request's, when
// its server is traced). Without it no span is made; pass
// otel.GetTracerProvider() for the global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *Observer) { o.tracerProvider = tp }
}

// WithCountInterval sets how long a count of live sessions is reused by
// the session.live gauge: counting reads the whole store, so it should not
// run at every collection when several readers collect, or one collects
// often. The default is DefaultCountInterval; a d of zero or less counts
// at every collection.
func WithCountInterval(d time.Duration) Option {
	return func(o *Observer) { o.countInterval = d }
}

// New creates the Observer's instruments. It fails only when the
// MeterProvider refuses one.
func New(opts ...Option) (*Observer, error) {
	o := &Observer{countInterval: DefaultCountInterval}
	for _, opt := range opts {
		opt(o)
	}
	if o.meterProvider == nil {
		o.meterProvider = otel.GetMeterProvider()
	}
	meter := o.meterProvider.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	var errs []error
	counter := func(name, unit, description string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(description))
		errs = append(errs, err)
		return c
	}
	var err error
	o.duration, err = meter.Float64Histogram("session.store.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of session store calls."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	o.created = counter("session.created", "{session}", "Sessions created.")
	o.renewed = counter("session.renewed", "{session}", "Sessions whose token was renewed, by Renew or at sign-in.")
	o.signIns = counter("session.signed_in", "{session}", "Sessions given a user (SetUser).")
	o.ended = counter("session.ended", "{session}", "Sessions ended, by reason.")
	o.refused = counter("session.token.refused", "{token}", "Tokens refused or leading to no session, by reason.")
	o.responses = counter("session.error_handler.responses", "{response}", "Responses the error handler wrote in place of the handler's, by status.")
	_, err = meter.Int64ObservableGauge("session.live",
		metric.WithUnit("{session}"),
		metric.WithDescription("Live sessions in the store, shared by every instance on the same store."),
		metric.WithInt64Callback(o.observeLive))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sessionotel: creating instruments: %w", err)
	}

	if o.tracerProvider != nil {
		o.tracer = o.tracerProvider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
	}
	o.operations = make(map[string]*operation, len(storeOperations))
	for _, name := range storeOperations {
		o.operations[name] = newOperation(name)
	}
	o.calls.New = func() any {
		c := &call{o: o}
		c.end = c.finish // bound once: the method value is the one allocation
		return c
	}
	o.endReasons = addOptions(EndReasonKey, "destroyed", "revoked", "evicted", "expired")
	o.refusals = addOptions(RefusalReasonKey, "malformed", "signature", "expired", "unknown")
	o.statuses = map[int][]metric.AddOption{}
	for _, status := range []int{http.StatusRequestEntityTooLarge, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		o.statuses[status] = statusOptions(status)
	}
	return o, nil
}

func newOperation(name string) *operation {
	op := &operation{
		spanName: "session.store " + name,
		spanStart: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(OperationKey.String(name)),
		},
		record:    make([][]metric.RecordOption, outcomes),
		errorType: make([]attribute.KeyValue, outcomes),
	}
	for i := range outcomes {
		attrs := []attribute.KeyValue{OperationKey.String(name)}
		if t := outcomeName(i); t != "" {
			op.errorType[i] = semconv.ErrorTypeKey.String(t)
			attrs = append(attrs, op.errorType[i])
		}
		op.record[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	}
	return op
}

// addOptions returns the counter options for each value of key.
func addOptions(key attribute.Key, values ...string) map[string][]metric.AddOption {
	options := make(map[string][]metric.AddOption, len(values))
	for _, v := range values {
		options[v] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(key.String(v)))}
	}
	return options
}

func statusOptions(status int) []metric.AddOption {
	if status == 0 {
		return nil // the error handler wrote nothing: the client had gone
	}
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(semconv.HTTPResponseStatusCodeKey.Int(status)))}
}

// operation returns the precomputed attributes of the store operation
// named name.
func (o *Observer) operation(name string) *operation {
	if op, ok := o.operations[name]; ok {
		return op
	}
	if op, ok := o.unforeseen.Load(name); ok {
		return op.(*operation)
	}
	op, _ := o.unforeseen.LoadOrStore(name, newOperation(name))
	return op.(*operation)
}

// epoch anchors the calls' timing to the monotonic clock: time.Since of a
// Time that holds a monotonic reading reads that clock alone, which costs
// half of time.Now's two clocks.
var epoch = time.Now()

// call is one store call in progress. Its end field, handed to the
// Manager, is bound to it once, and the call is recycled when it ends, so
// a store call costs no allocation. The Manager calls end exactly once, as
// session.Observer requires.
type call struct {
	o     *Observer
	end   func(error)
	op    *operation
	ctx   context.Context
	span  trace.Span
	start time.Duration // since epoch
}

// StoreCall starts timing a store call, and a span when spans are on.
func (o *Observer) StoreCall(ctx context.Context, op string) func(error) {
	c := o.calls.Get().(*call)
	c.op, c.ctx = o.operation(op), ctx
	if o.tracer != nil {
		c.ctx, c.span = o.tracer.Start(ctx, c.op.spanName, c.op.spanStart...)
	}
	c.start = time.Since(epoch)
	return c.end
}

// finish records the call's duration and outcome and ends its span.
func (c *call) finish(err error) {
	elapsed := (time.Since(epoch) - c.start).Seconds()
	i := outcome(err)
	c.o.duration.Record(c.ctx, elapsed, c.op.record[i]...)
	if c.span != nil {
		if i != 0 {
			c.span.SetAttributes(c.op.errorType[i])
			c.span.RecordError(err)
			c.span.SetStatus(codes.Error, c.op.errorType[i].Value.AsString())
		}
		c.span.End()
	}
	c.op, c.ctx, c.span = nil, nil, nil // keep nothing of the request alive in the pool
	c.o.calls.Put(c)
}

// TokenRefused counts a refused token by its reason.
func (o *Observer) TokenRefused(ctx context.Context, reason string) {
	options, ok := o.refusals[reason]
	if !ok {
		options = []metric.AddOption{metric.WithAttributes(RefusalReasonKey.String(reason))}
	}
	o.refused.Add(ctx, 1, options...)
}

// Event counts a session's creation, renewal, sign-in or end. A kind of
// event this package does not know is not counted: it cannot tell whether
// the session ended. An Event carries no context, so these measurements
// have no exemplars.
func (o *Observer) Event(e session.Event) {
	ctx := context.Background()
	switch e.Kind {
	case "created":
		o.created.Add(ctx, 1)
	case "renewed":
		o.renewed.Add(ctx, 1)
	case "signed-in":
		o.signIns.Add(ctx, 1)
	default:
		if options, ok := o.endReasons[e.Kind]; ok {
			o.ended.Add(ctx, 1, options...)
		}
	}
}

// Answered counts a response of the error handler by its status.
func (o *Observer) Answered(ctx context.Context, status int) {
	options, ok := o.statuses[status]
	if !ok {
		options = statusOptions(status)
	}
	o.responses.Add(ctx, 1, options...)
}

// LiveSessions keeps count for the session.live gauge.
func (o *Observer) LiveSessions(count func(context.Context) (int64, error)) {
	o.live.mu.Lock()
	defer o.live.mu.Unlock()
	o.live.count, o.live.counted = count, time.Time{}
}

// liveCount caches the last count of live sessions.
type liveCount struct {
	mu      sync.Mutex
	count   func(context.Context) (int64, error) // nil until LiveSessions
	counted time.Time                            // when n and err were counted
	n       int64
	err     error
}

// observeLive is the session.live gauge's callback: it runs when a reader
// collects, never on a request's path, and counts again only once the
// last count is countInterval old. A failed count is reused as long, so a
// store in trouble is not asked for a whole-store count at each
// collection; meanwhile the gauge has no value rather than a stale one.
func (o *Observer) observeLive(ctx context.Context, observer metric.Int64Observer) error {
	l := &o.live
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		return nil
	}
	if now := time.Now(); l.counted.IsZero() || now.Sub(l.counted) >= o.countInterval {
		ctx, cancel := context.WithTimeout(ctx, countTimeout)
		l.n, l.err = l.count(ctx)
		cancel()
		l.counted = now
	}
	if l.err != nil {
		return fmt.Errorf("sessionotel: counting live sessions: %w", l.err)
	}
	observer.Observe(l.n)
	return nil
}
