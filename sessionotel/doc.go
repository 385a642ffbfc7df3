// Package sessionotel reports what a session.Manager does as OpenTelemetry
// metrics, and optionally traces its store calls. It lives apart from
// package session so that an application that does not use OpenTelemetry
// never compiles it.
//
// Quick start, with the application's own SDK MeterProvider:
//
//	observer, err := sessionotel.New(sessionotel.WithMeterProvider(provider))
//	if err != nil { log.Fatal(err) }
//	sessions, err := session.New(ctx, cfg, session.WithObserver(observer))
//
// The application owns the SDK, its readers and exporters: this package
// uses only the OpenTelemetry API. Without WithMeterProvider it uses the
// global MeterProvider (otel.GetMeterProvider), as OpenTelemetry's own
// instrumentation libraries do, so an application that sets one at start-up,
// even after New, gets the metrics with nothing more to say. Spans are
// opt-in, with WithTracerProvider: a span per store call doubles the spans
// of a request, and costs allocations on every request even with a no-op
// provider.
//
// The instruments follow OpenTelemetry's semantic conventions; each is
// listed, with what to alert on, in docs/metrics.md:
//
//   - session.store.operation.duration (histogram, s): every store call, by
//     session.store.operation and, when it failed, error.type;
//   - session.created, session.renewed, session.signed_in (counters,
//     {session});
//   - session.ended (counter, {session}) by session.end.reason: destroyed,
//     revoked, evicted or expired;
//   - session.token.refused (counter, {token}) by
//     session.token.refusal.reason: malformed, signature, expired, unknown;
//   - session.error_handler.responses (counter, {response}) by
//     http.response.status_code;
//   - session.live (gauge, {session}): live sessions in the store, counted
//     when the metrics are collected, at most once per WithCountInterval.
//
// No attribute ever holds a token, a store key, a user ID or an IP address:
// every attribute value comes from a short fixed list.
package sessionotel
