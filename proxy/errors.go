package proxy

import (
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/problem"
)

// Reason codes for the answers the proxy itself gives. They appear in the page, the JSON body,
// the access log and metrics; they are stable and never contain request data.
const (
	reasonNotFound         = "no_route"
	reasonMethodNotAllowed = "method_not_allowed"
	reasonBadHost          = "bad_host"
	reasonBadRequest       = "bad_request"
	reasonNoSession        = "no_session"
	reasonUpstreamDown     = "upstream_unavailable"
	reasonUpstreamTimeout  = "upstream_timeout"
	reasonNotReady         = "not_ready"
	reasonDuplicateAuthz   = "duplicate_authorization"
	reasonURITooLong       = "uri_too_long"
)

var messages = map[string]string{
	reasonNotFound:         "There is nothing at this address.",
	reasonMethodNotAllowed: "This address does not accept that kind of request.",
	reasonBadHost:          "The requested host name is not valid.",
	reasonBadRequest:       "The request could not be understood.",
	reasonNoSession:        "You need to sign in to reach this page.",
	reasonUpstreamDown:     "The application behind this address is not answering. Try again in a moment.",
	reasonUpstreamTimeout:  "The application behind this address took too long to answer. Try again in a moment.",
	reasonNotReady:         "The service is starting or a dependency is unavailable.",
	reasonDuplicateAuthz:   "The request carries more than one Authorization header.",
	reasonURITooLong:       "The address is too long.",
}

func newProblem(status int, reason string) problem.Problem {
	msg, ok := messages[reason]
	if !ok {
		// Path rejections share one message; their reason code says which rule.
		if strings.HasPrefix(reason, "path_") {
			msg = "The address contains characters or sequences that are not allowed."
		} else {
			msg = http.StatusText(status)
		}
	}
	return problem.New(status, reason, msg)
}

// writeProblem renders one of the proxy's own answers.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem.Problem) {
	problem.Write(w, r, p)
}
