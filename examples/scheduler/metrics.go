package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprometheus "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/smartscheduler/session/sessionotel"
)

// metrics is what the app tells operators: the session library's
// metrics (package sessionotel, listed in docs/metrics.md), served in
// Prometheus's text format on GET /metrics.
//
// The app owns the OpenTelemetry SDK: a MeterProvider whose one reader is
// the Prometheus exporter, collecting when /metrics is scraped, so nothing
// runs between scrapes. It has a registry of its own rather than
// Prometheus's global one, so that several apps in one process (the
// tests) do not collide.
//
// /metrics is on the app's own port for the demo. A deployment open to the
// internet would serve it on an internal port, or behind its proxy's
// access control: the counts say how busy the site is.
type metrics struct {
	observer *sessionotel.Observer
	handler  http.Handler
}

func newMetrics() (*metrics, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprometheus.New(otelprometheus.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	observer, err := sessionotel.New(sessionotel.WithMeterProvider(provider))
	if err != nil {
		return nil, err
	}
	return &metrics{observer: observer, handler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{})}, nil
}
