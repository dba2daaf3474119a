// Package config is Portcullis's configuration: the YAML schema as Go types, strict decoding
// that reports every problem at once with its file position, defaults kept in one table,
// validation, and secrets taken from the environment or from files.
//
// Load is the entry point: it decodes, applies defaults, validates and fills the parsed
// values (Server.TrustedPrefixes, Route.UpstreamURL, …). A Config it returns is complete and
// is never modified afterwards; a reload builds a new one.
//
// Paths in the file (tls.cert_file, password_file, upstream_tls.ca_file, …) are used as
// written: a relative path is relative to the working directory of the process.
//
// This package imports no other package of the project.
package config
