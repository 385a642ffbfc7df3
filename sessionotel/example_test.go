package sessionotel_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/sessionotel"
)

// An application hands the Observer its own MeterProvider, here with a
// ManualReader where a real one would have a Prometheus or OTLP exporter,
// and gives the Observer to its Manager.
func Example() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	observer, err := sessionotel.New(sessionotel.WithMeterProvider(provider))
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.New(context.Background(),
		session.Config{Secret: "example-secret-example-secret-example"},
		session.WithObserver(observer))
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	handler := sessions.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Set("theme", "dark")
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch data := m.Data.(type) {
		case metricdata.Sum[int64]:
			fmt.Printf("%s %d %s\n", m.Name, data.DataPoints[0].Value, m.Unit)
		case metricdata.Gauge[int64]:
			fmt.Printf("%s %d %s\n", m.Name, data.DataPoints[0].Value, m.Unit)
		case metricdata.Histogram[float64]:
			op, _ := data.DataPoints[0].Attributes.Value(sessionotel.OperationKey)
			fmt.Printf("%s: %d %s call in %s\n", m.Name, data.DataPoints[0].Count, op.AsString(), m.Unit)
		}
	}
	// Output:
	// session.store.operation.duration: 1 insert call in s
	// session.created 1 {session}
	// session.live 1 {session}
}
