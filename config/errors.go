package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem (or one warning) in a configuration file, located by file, line and
// column (1-based) and by the key path such as "routes[2].upstream". A zero Line means the
// position is unknown; an empty Key means the problem concerns the whole file.
//
// Messages never contain the value of a Secret, nor any value that came from an environment
// variable or a file; they quote at most what the file itself says.
type Error struct {
	File    string
	Line    int
	Column  int
	Key     string
	Message string
}

// Error formats the problem as FILE:LINE:COL: KEY: MESSAGE, the form editors and CI jump to.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Column))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Message)
	return b.String()
}

// Errors is every problem found in one file, in file order. It is the error Load returns,
// and also the type of its warnings.
type Errors []Error

// Error returns one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sortErrors orders problems as they appear in the file; problems at the same place keep
// the order in which they were found.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
