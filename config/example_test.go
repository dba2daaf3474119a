package config_test

import (
	"fmt"

	"github.com/portcullis-proxy/portcullis/config"
)

// Every problem is reported at once, each with its place.
func ExampleParse() {
	_, warnings, err := config.Parse("portcullis.yaml", []byte(`
tls:
  mode: self_signed
routes:
  - name: app
    upstrem: http://10.0.0.5
  - name: all
    upstream: http://10.0.0.5
    methods: [get]
`))
	fmt.Println(err)
	fmt.Println(len(warnings), "warnings")
	// Output:
	// portcullis.yaml:5:5: routes[0].upstream: is required: the portal's base URL, such as "http://10.0.0.5:8080"
	// portcullis.yaml:6:5: routes[0].upstrem: unknown key; did you mean "upstream"?
	// portcullis.yaml:9:15: routes[1].methods[0]: must be upper-case: methods are case-sensitive, so "get" would never match
	// 0 warnings
}

// Defaults lists every default, for documentation.
func ExampleDefaults() {
	for _, d := range config.Defaults()[:3] {
		fmt.Printf("%s: %s\n", d.Key, d.Value)
	}
	// Output:
	// server.listen: ":8443" (":8080" when tls.mode is off)
	// server.metrics_listen: "127.0.0.1:9090"
	// server.read_header_timeout: 10s
}
