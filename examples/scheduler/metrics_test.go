package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestMetrics scrapes /metrics as Prometheus would, after two users signed
// in on PostgreSQL and one signed out.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := start(t, postgresConfig(t))
	ada, grace := newBrowser(t), newBrowser(t)
	ada.signIn(s, "ada", "lovelace")
	grace.signIn(s, "grace", "hopper")
	grace.post(s, "/signout", nil)
	ada.get(s, "/")

	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	scrape := string(body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d, %s:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), scrape)
	}
	if c := resp.Header.Get("Set-Cookie"); c != "" {
		t.Errorf("a scrape was given a session cookie: %s", c)
	}

	for _, c := range []struct {
		series string
		labels []string
		want   float64
	}{
		// Two sign-ins, and the fresh session carrying the flash message
		// "You have signed out."
		{"session_created_total", nil, 3},
		{"session_signed_in_total", nil, 2},
		{"session_ended_total", []string{`session_end_reason="destroyed"`}, 1},
		{"session_live", nil, 2},
		{"session_store_operation_duration_seconds_count", []string{`session_store_operation="insert"`}, 3},
	} {
		got, ok := sample(scrape, c.series, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found: %t), want %v", c.series, c.labels, got, ok, c.want)
		}
	}
	for _, cookie := range ada.cookies(s) {
		if strings.Contains(scrape, cookie.Value) {
			t.Errorf("the scrape shows ada's cookie")
		}
	}
	if t.Failed() {
		t.Logf("the scrape:\n%s", scrape)
	}
}

// sample is the value of the first sample of series in a Prometheus text
// scrape whose labels include every one of labels.
func sample(scrape, series string, labels ...string) (float64, bool) {
	for line := range strings.Lines(scrape) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), series+"{")
		if !ok {
			continue
		}
		set, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(set, l)
		}
		if !matches {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		return v, err == nil
	}
	return 0, false
}
