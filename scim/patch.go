package scim

import (
	"fmt"
	"slices"
	"strings"

	escim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	filter "github.com/scim2/filter-parser/v2"

	"github.com/portcullis-proxy/portcullis/authz"
)

// violations is the policy's refusal as one message, naming every rule.
func violations(vs []authz.Violation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Error()
	}
	return "the lifecycle policy refuses this membership: " + strings.Join(parts, "; ")
}

// applyOp applies one PATCH operation (RFC 7644 §3.5.2), as the library parsed and checked it
// against the schema, to res: a resource's attributes. Names compare without case. Paths are
// an attribute, an attribute's sub-attribute, an extension's attribute (its URN first), or a
// multi-valued attribute filtered by eq on a sub-attribute, optionally followed by a
// sub-attribute: what Entra ID and Okta send.
func applyOp(res map[string]any, op escim.PatchOperation) error {
	if op.Path == nil {
		// No path: the value is an object of attributes, each replaced or added. Entra ID
		// writes their names as paths ("name.givenName", an extension's URN first).
		vals, ok := op.Value.(map[string]any)
		if !ok {
			return scimerrors.ScimErrorInvalidValue
		}
		for k, v := range vals {
			if vm, ok := v.(map[string]any); ok && strings.HasPrefix(strings.ToLower(k), "urn:") {
				// An extension's attributes as one object ("urn:…:User": {…}): merged.
				setAttr(res, k, vm, true)
				continue
			}
			p, err := filter.ParsePath([]byte(k))
			if err != nil {
				// A URN key whose attribute is an object ("urn:…:User": {…}) parses as no
				// path: merge it as one attribute.
				setAttr(res, k, v, op.Op == escim.PatchOperationAdd)
				continue
			}
			if err := applyOp(res, escim.PatchOperation{Op: op.Op, Path: &p, Value: v}); err != nil {
				return err
			}
		}
		return nil
	}
	target := res
	ap := op.Path.AttributePath
	if ap.URIPrefix != nil {
		ext, _ := getAttr(res, *ap.URIPrefix).(map[string]any)
		if ext == nil {
			if op.Op == escim.PatchOperationRemove {
				return nil
			}
			ext = map[string]any{}
			setAttr(res, *ap.URIPrefix, ext, false)
		}
		target = ext
	}
	name := ap.AttributeName
	sub := ap.SubAttribute
	if op.Path.ValueExpression != nil {
		return applyFiltered(target, name, op.Path.ValueExpression, op.Path.SubAttribute, op)
	}
	if sub != nil {
		if list, ok := getAttr(target, name).([]any); ok {
			// A sub-attribute of a multi-valued attribute without a filter: every value's
			// (RFC 7644 §3.5.2.3), never the list turned into one object.
			for _, el := range list {
				m, ok := el.(map[string]any)
				if !ok {
					return scimerrors.ScimErrorInvalidPath
				}
				if op.Op == escim.PatchOperationRemove {
					deleteAttr(m, *sub)
				} else {
					setAttr(m, *sub, op.Value, false)
				}
			}
			return nil
		}
		parent, _ := getAttr(target, name).(map[string]any)
		if parent == nil {
			if op.Op == escim.PatchOperationRemove {
				return nil
			}
			parent = map[string]any{}
			setAttr(target, name, parent, false)
		}
		target, name = parent, *sub
	}
	switch op.Op {
	case escim.PatchOperationRemove:
		// Entra ID removes members by value: {"op":"Remove","path":"members","value":[…]};
		// an empty list removes none.
		if vs, ok := op.Value.([]any); ok {
			if cur, ok := getAttr(target, name).([]any); ok {
				cur = slices.DeleteFunc(slices.Clone(cur), func(x any) bool {
					return slices.ContainsFunc(vs, func(v any) bool { return sameValue(x, v) })
				})
				if len(cur) == 0 {
					deleteAttr(target, name)
				} else {
					setAttr(target, name, cur, false)
				}
				return nil
			}
		}
		deleteAttr(target, name)
	case escim.PatchOperationAdd:
		setAttr(target, name, op.Value, true)
	default:
		setAttr(target, name, op.Value, false)
	}
	return nil
}

// applyFiltered applies op to the elements of the multi-valued attribute name that expr
// selects (members[value eq "…"], emails[type eq "work"].value).
func applyFiltered(res map[string]any, name string, expr filter.Expression, sub *string, op escim.PatchOperation) error {
	list, _ := getAttr(res, name).([]any)
	match := func(el any) (bool, error) {
		m, ok := el.(map[string]any)
		if !ok {
			return false, nil
		}
		return matches(m, expr)
	}
	var out []any
	found := false
	for _, el := range list {
		ok, err := match(el)
		if err != nil {
			return err
		}
		if !ok {
			out = append(out, el)
			continue
		}
		found = true
		switch {
		case op.Op == escim.PatchOperationRemove && sub == nil:
			// dropped
		case op.Op == escim.PatchOperationRemove:
			m := el.(map[string]any)
			deleteAttr(m, *sub)
			out = append(out, m)
		case sub != nil:
			m := el.(map[string]any)
			setAttr(m, *sub, op.Value, false)
			out = append(out, m)
		default:
			out = append(out, op.Value)
		}
	}
	if !found && op.Op != escim.PatchOperationRemove {
		// RFC 7644 §3.5.2.3: a filter that matches nothing is an error for replace; for
		// add, Entra ID adds the value with the filter's attribute set ("type eq work").
		if sub == nil {
			return scimerrors.ScimErrorNoTarget
		}
		el := map[string]any{}
		if ae, ok := expr.(*filter.AttributeExpression); ok && ae.Operator == filter.EQ && ae.AttributePath.SubAttribute == nil {
			el[ae.AttributePath.AttributeName] = ae.CompareValue
		} else {
			return scimerrors.ScimErrorNoTarget
		}
		el[*sub] = op.Value
		out = append(out, el)
	}
	if out == nil {
		deleteAttr(res, name)
		return nil
	}
	setAttr(res, name, out, false)
	return nil
}

// matches evaluates the filters PATCH paths use on one element: eq, and and or of them.
func matches(m map[string]any, expr filter.Expression) (bool, error) {
	switch e := expr.(type) {
	case *filter.AttributeExpression:
		v := getAttr(m, e.AttributePath.AttributeName)
		switch e.Operator {
		case filter.EQ:
			if s, ok := v.(string); ok {
				cs, _ := e.CompareValue.(string)
				return strings.EqualFold(s, cs), nil
			}
			return fmt.Sprint(v) == fmt.Sprint(e.CompareValue), nil
		case filter.PR:
			return v != nil, nil
		}
	case *filter.LogicalExpression:
		l, err := matches(m, e.Left)
		if err != nil {
			return false, err
		}
		r, err := matches(m, e.Right)
		if err != nil {
			return false, err
		}
		if e.Operator == filter.AND {
			return l && r, nil
		}
		return l || r, nil
	}
	return false, scimerrors.ScimErrorInvalidFilter
}

// getAttr, setAttr and deleteAttr read and write res[name], the name compared without case.
func getAttr(res map[string]any, name string) any {
	for k, v := range res {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func setAttr(res map[string]any, name string, v any, add bool) {
	key := name
	for k := range res {
		if strings.EqualFold(k, name) {
			key = k
		}
	}
	if add {
		// Adding to a multi-valued attribute appends (members, emails); to a complex one,
		// merges its sub-attributes.
		switch cur := res[key].(type) {
		case []any:
			if vs, ok := v.([]any); ok {
				for _, x := range vs {
					if !slices.ContainsFunc(cur, func(y any) bool { return sameValue(x, y) }) {
						cur = append(cur, x)
					}
				}
				res[key] = cur
				return
			}
		case map[string]any:
			if vm, ok := v.(map[string]any); ok {
				for k, x := range vm {
					setAttr(cur, k, x, false)
				}
				return
			}
		}
	}
	res[key] = v
}

// sameValue reports whether two multi-valued elements are one (same "value").
func sameValue(a, b any) bool {
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if ok1 && ok2 {
		return am["value"] != nil && fmt.Sprint(am["value"]) == fmt.Sprint(bm["value"])
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func deleteAttr(res map[string]any, name string) {
	for k := range res {
		if strings.EqualFold(k, name) {
			delete(res, k)
		}
	}
}
