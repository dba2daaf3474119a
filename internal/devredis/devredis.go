// Package devredis runs an in-process Redis-compatible server (miniredis) for `portcullis
// dev`, so the demo needs nothing installed. It is never used by `portcullis serve`: an
// in-memory store there would lose every session and membership at restart and could not be
// shared between replicas.
package devredis

import "github.com/alicebob/miniredis/v2"

// Server is a running in-process Redis-compatible server.
type Server struct{ m *miniredis.Miniredis }

// Start listens on a free loopback port.
func Start() (*Server, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return &Server{m: m}, nil
}

// Addr is host:port to put in redis.address.
func (s *Server) Addr() string { return s.m.Addr() }

// Close stops the server; its data is gone.
func (s *Server) Close() { s.m.Close() }
