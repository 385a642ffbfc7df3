package main

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// What the sessions page says of a session's device: the browser and
// system its user agent names, and how long ago it was last active.

// browsers maps a user agent's product tokens to a browser's name, first
// match wins. The order matters: Edge, Opera and Samsung Internet also say
// "Chrome/", every Chromium browser also says "Safari/", and Safari alone
// carries its version in "Version/" (Android's WebView says "Version/4.0"
// too, but also "Chrome/", which comes first).
var browsers = []struct{ token, name string }{
	{"Edg/", "Edge"},
	{"EdgA/", "Edge"},
	{"EdgiOS/", "Edge"},
	{"OPR/", "Opera"},
	{"SamsungBrowser/", "Samsung Internet"},
	{"FxiOS/", "Firefox"},
	{"Firefox/", "Firefox"},
	{"CriOS/", "Chrome"},
	{"HeadlessChrome/", "Headless Chrome"},
	{"Chromium/", "Chromium"},
	{"Chrome/", "Chrome"},
	{"Version/", "Safari"},
}

// systems maps a user agent's platform tokens to an operating system's
// name, first match wins: Android and ChromeOS also say "Linux", iPhones
// and iPads "like Mac OS X". Safari on an iPad sends the macOS user agent
// unless asked for the mobile site, so most iPads show as macOS: the user
// agent cannot tell them apart.
var systems = []struct{ token, name string }{
	{"CrOS", "ChromeOS"},
	{"Android", "Android"},
	{"iPad", "iPadOS"},
	{"iPhone", "iOS"},
	{"iPod", "iOS"},
	{"Windows", "Windows"},
	{"Macintosh", "macOS"},
	{"Linux", "Linux"},
}

// maxClientName bounds the name shown for a client that is not a browser,
// which is whatever its user agent begins with.
const maxClientName = 40

// deviceName names the browser and system of the user agent ua as a person
// would, such as "Firefox 128 on Windows", "Safari 17 on iOS" or, for a
// client that is no browser, its product name: "curl", "python-requests".
func deviceName(ua string) string {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return "Unknown browser"
	}
	if !strings.HasPrefix(ua, "Mozilla/") {
		// Not a browser: curl/8.5.0, Go-http-client/1.1, okhttp/4.12.0.
		name, _, _ := strings.Cut(strings.Fields(ua)[0], "/")
		return truncate(name, maxClientName)
	}
	browser := "Unknown browser"
	for _, b := range browsers {
		if i := strings.Index(ua, b.token); i >= 0 && (b.name != "Safari" || strings.Contains(ua, "Safari/")) {
			browser = b.name
			if version := majorVersion(ua[i+len(b.token):]); version != "" {
				browser += " " + version
			}
			break
		}
	}
	for _, s := range systems {
		if strings.Contains(ua, s.token) {
			return browser + " on " + s.name
		}
	}
	return browser
}

// majorVersion is the number s begins with ("128" of "128.0 Safari/..."),
// or "".
func majorVersion(s string) string {
	end := 0
	for end < len(s) && end < 6 && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	return s[:end]
}

// truncate cuts s to at most n runes, marking a cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// ago says how long before now t was, as "just now", "5 minutes ago", "1
// hour ago" or "3 days ago". A t after now (clocks apart) is "just now".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	default:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
}

// plural is n followed by noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
