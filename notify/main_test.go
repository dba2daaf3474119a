package notify

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// TestMain shares one redis-server between the package's tests (each with a database and a
// key prefix of its own).
func TestMain(m *testing.M) { redistest.Main(m) }
