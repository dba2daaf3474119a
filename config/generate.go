package config

// The configuration reference in README.md is generated from this package: key paths and
// types from the Go types by reflection, defaults from Defaults, meanings from the fields'
// doc comments. TestConfigReference (reference_test.go) fails when README.md differs from
// what it generates; with -update it rewrites the section.

//go:generate go test -count=1 -run TestConfigReference . -args -update
