package main

// Tests in a real browser: Debian's chromium, headless, driven through the
// DevTools protocol with chromedp. They check what only a browser shows:
// cookies kept per browser, the sign-in time in the viewer's own time
// zone, and the layout on a phone's screen.
//
// Locally, with chromium installed (Debian and Ubuntu: apt-get install
// chromium):
//
//	go test ./examples/scheduler -run Browser -v
//
// Without chromium they skip, saying so; with CI set (as .ci/run does) or
// SESSION_REQUIRE_CHROMIUM=1 they fail instead. SCHEDULER_SCREENSHOTS=DIR
// keeps the screenshots they take in DIR, to look at; by default they go to
// a temporary directory.

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the time zones the browsers are put in, on any machine

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/smartscheduler/session/internal/pgtest"
)

// browserTimeout bounds one test's browser, start to finish: a step that
// waits for an element that never comes fails the test instead of hanging.
const browserTimeout = 90 * time.Second

// A laptop and a phone, as the app sees them: each its own browser
// context (cookies of its own), user agent, client address (sent as
// X-Forwarded-For, which the app believes from 127.0.0.1 when
// SESSION_TRUSTED_PROXIES says so), time zone and screen.
var (
	windowsLaptop = profile{
		userAgent: firefoxOnWindows, name: "Firefox 128 on Windows", address: "203.0.113.7",
		timeZone: "Asia/Kolkata", locale: "en_GB", zoneName: "GMT+5:30", width: 1280, height: 800,
	}
	iPhone = profile{
		userAgent: safariOnIPhone, name: "Safari 17 on iOS", address: "198.51.100.23",
		timeZone: "America/New_York", locale: "en_US", width: 390, height: 844, mobile: true,
	}
)

func TestBrowserSessionsPage(t *testing.T) {
	t.Parallel()
	browser := launchChromium(t)
	table := pgtest.Schema(t) // before serve: dropped after the app stops
	app := serve(t, map[string]string{
		"USE_POSTGRES": "true", "DATABASE_URL": pgtest.URL(t), "SESSION_TABLE": table,
		"SESSION_TRUSTED_PROXIES": "127.0.0.1",
	})
	onLaptop, onPhone := windowsLaptop.open(t, browser), iPhone.open(t, browser)
	signIn(t, onLaptop, app.URL, "grace", "hopper")
	signIn(t, onPhone, app.URL, "grace", "hopper")

	// Each sees both, itself first and marked, the other with a Sign out
	// button, each with its browser, its address and the sign-in time in
	// the viewer's zone.
	for _, viewer := range []struct {
		ctx       context.Context
		me, other profile
	}{{onLaptop, windowsLaptop, iPhone}, {onPhone, iPhone, windowsLaptop}} {
		view := visit(t, viewer.ctx, app.URL+"/sessions")
		if len(view.Devices) != 2 {
			t.Fatalf("%s sees %d sessions, want 2: %+v", viewer.me.name, len(view.Devices), view)
		}
		for i, want := range []profile{viewer.me, viewer.other} {
			got := view.Devices[i]
			current := i == 0
			if got.Name != want.name || got.IP != want.address || got.Current != current || got.SignOut == current || got.Active != "active just now" {
				t.Errorf("%s sees row %d as %+v, want %s at %s, this device: %v, with a Sign out button: %v, active just now", viewer.me.name, i, got, want.name, want.address, current, !current)
			}
			viewer.me.checkLocalTime(t, got)
		}
	}
	iPhone.checkHeaderFits(t, onPhone, "sessions")
	windowsLaptop.checkHeaderFits(t, onLaptop, "sessions")

	// Sign out everywhere else: the phone is signed out at its next click.
	view := click(t, onLaptop, `form[action="/sessions/revoke-others"] button`)
	if view.Path != "/sessions" || len(view.Devices) != 1 || !strings.Contains(strings.Join(view.Flashes, " "), "Signed out of 1 other session.") {
		t.Errorf("after Sign out everywhere else the laptop sees %+v, want the sessions page with itself alone", view)
	}
	if view := click(t, onPhone, `nav a[href="/"]`); view.Path != "/signin" {
		t.Errorf("after Sign out everywhere else the phone's next click led to %s, want the sign-in page", view.Path)
	}

	// The Sign out button of one row does the same to that session.
	signIn(t, onPhone, app.URL, "grace", "hopper")
	visit(t, onLaptop, app.URL+"/sessions")
	if view := click(t, onLaptop, `li.device:not(.current) form button`); len(view.Devices) != 1 {
		t.Errorf("after signing out the phone's row the laptop sees %+v, want itself alone", view)
	}
	if view := click(t, onPhone, `nav a[href="/sessions"]`); view.Path != "/signin" {
		t.Errorf("after its row was signed out the phone's next click led to %s, want the sign-in page", view.Path)
	}

	log, err := app.stop()
	if err != nil {
		t.Errorf("the app stopped with %v", err)
	}
	for _, want := range []string{"new sign-in from Firefox 128 on Windows", "new sign-in from Safari 17 on iOS"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	for _, personal := range []string{windowsLaptop.address, iPhone.address, "grace"} {
		if strings.Contains(log, personal) {
			t.Errorf("the log names %q:\n%s", personal, log)
		}
	}
}

func TestBrowserMaxPerUser(t *testing.T) {
	t.Parallel()
	browser := launchChromium(t)
	app := serve(t, map[string]string{"SESSION_MAX_PER_USER": "1"})
	onLaptop, onPhone := windowsLaptop.open(t, browser), iPhone.open(t, browser)
	signIn(t, onLaptop, app.URL, "ada", "lovelace")
	signIn(t, onPhone, app.URL, "ada", "lovelace")
	if view := click(t, onLaptop, `nav a[href="/sessions"]`); view.Path != "/signin" {
		t.Errorf("with SESSION_MAX_PER_USER=1, the first browser's next click after a second sign-in led to %s, want the sign-in page", view.Path)
	}
	if view := visit(t, onPhone, app.URL+"/sessions"); len(view.Devices) != 1 || !view.Devices[0].Current {
		t.Errorf("with SESSION_MAX_PER_USER=1 the second browser sees %+v, want itself alone", view.Devices)
	}
}

// profile is one browser the tests sign in with.
type profile struct {
	userAgent, name  string // the User-Agent header and what the page should call it
	address          string // the client address the proxy reports
	timeZone, locale string
	zoneName         string // what Intl calls timeZone, when not Go's abbreviation
	width, height    int64
	mobile           bool
}

// open opens a tab in a new browser context of browser (so with cookies
// of its own) and makes it p.
func (p profile) open(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	var screen []chromedp.EmulateViewportOption
	if p.mobile {
		screen = append(screen, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	err := chromedp.Do(ctx,
		call(emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: p.userAgent}),
		call(emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: p.timeZone}),
		call(emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: p.locale}),
		call(network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"X-Forwarded-For": p.address}}),
		chromedp.EmulateViewport(p.width, p.height, screen...),
	)
	if err != nil {
		t.Fatalf("open a tab as %s: %v", p.name, err)
	}
	return ctx
}

// call is an action that sends one DevTools command.
func call[P, R any](command cdp.Command[P, R], params P) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := cdp.Call(ctx, target, command, params)
		return err
	})
}

// checkLocalTime checks that row's sign-in time is shown in p's time zone,
// naming it, rather than in the server's UTC.
func (p profile) checkLocalTime(t *testing.T, row deviceRow) {
	t.Helper()
	signedIn, err := time.Parse(time.RFC3339, row.Datetime)
	if err != nil {
		t.Errorf("%s: the sign-in time's datetime is %q: %v", p.name, row.Datetime, err)
		return
	}
	zone, err := time.LoadLocation(p.timeZone)
	if err != nil {
		t.Fatal(err)
	}
	local := signedIn.In(zone)
	abbreviation, clock := local.Format("MST"), local.Format("15:04")
	if p.locale == "en_US" {
		clock = local.Format("03:04 PM")
	}
	if p.zoneName != "" {
		abbreviation = p.zoneName
	}
	// The browser names the zone it resolved, which may be an alias
	// (Asia/Calcutta for Asia/Kolkata): the same offset will do.
	named, err := time.LoadLocation(row.TimeZone)
	if err != nil || signedIn.In(named).Format("-0700") != local.Format("-0700") || !strings.Contains(row.SignedIn, clock) || !strings.Contains(row.SignedIn, abbreviation) || strings.Contains(row.SignedIn, "UTC") {
		t.Errorf("%s shows the sign-in at %s (zone %q), want %s %s in %s", p.name, row.SignedIn, row.TimeZone, clock, abbreviation, p.timeZone)
	}
}

// checkHeaderFits screenshots the page on p's screen and checks that every
// control of the header, "Sign out" last, lies within the screen's width,
// and that nothing makes the page scroll sideways.
func (p profile) checkHeaderFits(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if config, err := png.DecodeConfig(bytes.NewReader(shot)); err != nil || int64(config.Width) != p.width {
		t.Errorf("the screenshot is not a PNG %d pixels wide: %v, %d", p.width, err, config.Width)
	}
	path := filepath.Join(screenshotDir(t), name+"-"+strings.ReplaceAll(strings.ToLower(p.name), " ", "-")+".png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	layout, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Width, ScrollWidth float64
		Controls           []struct {
			Text               string
			Left, Right, Width float64
		}
	}](`({
		width: document.documentElement.clientWidth,
		scrollWidth: document.documentElement.scrollWidth,
		controls: [...document.querySelectorAll("header a, header button")].map(e => {
			const box = e.getBoundingClientRect();
			return {text: e.textContent.trim(), left: box.left, right: box.right, width: box.width};
		}),
	})`))
	if err != nil {
		t.Fatalf("measure the page: %v", err)
	}
	if layout.Width != float64(p.width) || layout.ScrollWidth > layout.Width {
		t.Errorf("on a %d px screen the page is %v px wide and scrolls to %v px (screenshot: %s)", p.width, layout.Width, layout.ScrollWidth, path)
	}
	if n := len(layout.Controls); n == 0 || layout.Controls[n-1].Text != "Sign out" {
		t.Errorf("the header's controls are %+v, want Sign out last", layout.Controls)
	}
	for _, c := range layout.Controls {
		if c.Width == 0 || c.Left < 0 || c.Right > layout.Width {
			t.Errorf("on a %d px screen the header's %q lies at %v–%v px, outside the screen (screenshot: %s)", p.width, c.Text, c.Left, c.Right, path)
		}
	}
}

// screenshotDir is SCHEDULER_SCREENSHOTS, or a directory of the test's own.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("SCHEDULER_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// pageView is what a test reads of the page a tab shows.
type pageView struct {
	Path    string
	Flashes []string
	Devices []deviceRow // on the sessions page
}

// deviceRow is one session as the sessions page shows it.
type deviceRow struct {
	Name, IP, Active string
	SignedIn         string // the text shown
	Datetime         string // its machine-readable time
	TimeZone         string // the zone localtime.js named in its title
	Current, SignOut bool   // marked "This device"; has a Sign out button
}

const readPage = `({
	path: location.pathname,
	flashes: [...document.querySelectorAll(".flash")].map(e => e.textContent.trim()),
	devices: [...document.querySelectorAll("li.device")].map(li => ({
		name: li.querySelector(".name").textContent.trim(),
		ip: li.querySelector(".ip").textContent.trim(),
		active: li.querySelector(".active").textContent.trim(),
		signedIn: li.querySelector("time").textContent.trim(),
		datetime: li.querySelector("time").dateTime,
		timeZone: li.querySelector("time").title,
		current: li.querySelector(".badge")?.textContent === "This device",
		signOut: li.querySelector("form button")?.textContent === "Sign out",
	})),
})`

// visit loads url in the tab and reads the page.
func visit(t *testing.T, ctx context.Context, url string) pageView {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	return read(t, ctx)
}

// click clicks the element selector finds, as a person would, waits for
// the page it leads to (after any redirect), and reads it.
func click(t *testing.T, ctx context.Context, selector string) pageView {
	t.Helper()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		t.Fatalf("click %s: %v", selector, err)
	}
	return read(t, ctx)
}

func read(t *testing.T, ctx context.Context) pageView {
	t.Helper()
	p, err := chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return p
}

// signIn signs in through the form.
func signIn(t *testing.T, ctx context.Context, base, username, password string) {
	t.Helper()
	visit(t, ctx, base+"/signin")
	err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), username),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
	)
	if err != nil {
		t.Fatalf("fill in the sign-in form: %v", err)
	}
	if p := click(t, ctx, `form[action="/signin"] button`); p.Path != "/" {
		t.Fatalf("signing in as %s led to %s, want the schedule", username, p.Path)
	}
}

// launchChromium starts a headless chromium with a fresh profile for the
// test, and returns its context. The flags keep it off the network: the
// machine that runs CI reaches nothing but the app, and Chromium's
// background connections (updates, sync, safe browsing) would fail
// noisily.
func launchChromium(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	output := new(lockedBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	allocator, cancelAllocator := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true), // CI runs as root, where the sandbox refuses to start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.CombinedOutput(output),
	)...)
	browser, cancelBrowser := chromedp.NewContext(allocator)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAllocator() // waits for chromium to exit
		cancel()
		if t.Failed() {
			t.Logf("chromium's output:\n%s", output)
		}
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return browser
}

// chromiumPath finds chromium on the PATH. Without it the test skips,
// or fails where a skip would hide a broken machine: in CI (CI set) or
// with SESSION_REQUIRE_CHROMIUM=1.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	const missing = "chromium is not on the PATH; the browser tests need it: apt-get install chromium"
	if os.Getenv("CI") != "" || os.Getenv("SESSION_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(missing)
	}
	t.Skip(missing + " (with CI or SESSION_REQUIRE_CHROMIUM=1 set, this is a failure)")
	return ""
}

// lockedBuffer is a bytes.Buffer that chromium's output goroutine and the
// test may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
