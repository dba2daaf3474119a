package console

import (
	_ "embed"
	"errors"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed templates.html
var templateText string

// templates are the console's pages, parsed once.
var templates = template.Must(template.New("console").Funcs(template.FuncMap{
	"when":     when,
	"duration": duration,
	"state":    state,
	"join":     strings.Join,
	"dict":     dict,
	"person":   person,
	"has":      slices.Contains[[]string],
	"browser":  browserName,
}).Parse(templateText))

// person shows a person's key (issuer|subject) as people read it: the subject, with the
// issuer's host beside it, and the whole key as the element's title.
func person(key string) template.HTML {
	// At the first "|": issuers are URLs, and subjects may hold one ("auth0|123").
	iss, sub, ok := strings.Cut(key, "|")
	if !ok {
		return template.HTML(template.HTMLEscapeString(key)) //nolint:gosec // escaped
	}
	host := iss
	if u, err := url.Parse(iss); err == nil && u.Host != "" {
		host = u.Host
	}
	e := template.HTMLEscapeString
	return template.HTML(`<span class="person" title="` + e(key) + `">` + e(sub) + ` <span class="meta">(` + e(host) + `)</span></span>`) //nolint:gosec // escaped
}

// when shows a time to the minute, in UTC (the pages do not know the reader's zone).
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

// duration shows a grant's length in the units people ask in: days, hours, minutes.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d%(24*time.Hour) == 0:
		return plural(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	}
	return d.String()
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// states are the words for the API's states of memberships and requests.
var states = map[string]string{
	"active": "active", "expired": "ended", "review_overdue": "review overdue: not granting access", "suspended": "suspended",
	"revoked": "revoked", "org_inactive": "organisation inactive",
	"pending": "waiting for approval", "approved": "approved", "denied": "denied", "cancelled": "withdrawn",
	"lapsed": "lapsed (nobody answered in time)", "ended": "approved, now ended",
}

func state(s string) string {
	if w, ok := states[s]; ok {
		return w
	}
	return s
}

// dict makes a map of key, value pairs: the data of a template called from a range.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, errors.New("dict: key is not a string")
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// browserName names a browser from its User-Agent the way people call it ("Firefox on
// Linux"); the agent itself is not shown (it says little to most people, and much to some).
func browserName(ua string) string {
	if ua == "" {
		return "A browser"
	}
	name := "A browser"
	for _, b := range []struct{ token, name string }{{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"},
		{"Chromium/", "Chromium"}, {"HeadlessChrome/", "Chrome (headless)"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"},
		{"curl/", "curl"}, {"Go-http-client/", "A Go program"}} {
		if strings.Contains(ua, b.token) {
			name = b.name
			break
		}
	}
	for _, o := range []struct{ token, name string }{{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"}} {
		if strings.Contains(ua, o.token) {
			return name + " on " + o.name
		}
	}
	return name
}
