package scim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	escim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"

	"github.com/portcullis-proxy/portcullis/store"
)

// groups is the /Groups resource handler. A group's members are the organisation's users;
// scim.group_roles gives the role its members hold.
type groups struct{ s *Server }

func (h groups) Get(r *http.Request, id string) (escim.Resource, error) {
	c := callerOf(r)
	g, err := h.s.o.Store.SCIMGroup(r.Context(), c.org, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return escim.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
		}
		return escim.Resource{}, h.s.fail(err, "read group")
	}
	us, err := h.s.o.Store.SCIMUsers(r.Context(), c.org)
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "read users")
	}
	return groupResource(g, names(us), excludesMembers(r)), nil
}

func (h groups) GetAll(r *http.Request, p escim.ListRequestParams) (escim.Page, error) {
	c := callerOf(r)
	gs, err := h.s.o.Store.SCIMGroups(r.Context(), c.org)
	if err != nil {
		return escim.Page{}, h.s.fail(err, "list groups")
	}
	us, err := h.s.o.Store.SCIMUsers(r.Context(), c.org)
	if err != nil {
		return escim.Page{}, h.s.fail(err, "list users")
	}
	byID := names(us)
	var all []escim.Resource
	for i := range gs {
		res := groupResource(&gs[i], byID, excludesMembers(r))
		if p.FilterValidator != nil && p.FilterValidator.PassesFilter(withCommon(groupResource(&gs[i], byID, false))) != nil {
			continue
		}
		all = append(all, res)
	}
	return page(all, p), nil
}

func (h groups) Create(r *http.Request, attrs escim.ResourceAttributes) (escim.Resource, error) {
	c := callerOf(r)
	o, err := h.s.o.Store.Org(r.Context(), c.org)
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "read organisation")
	}
	g, err := groupFrom(attrs)
	if err != nil {
		return escim.Resource{}, err
	}
	g.ID = store.NewSCIMID()
	if err := h.s.change(r, o, func(st *store.SCIMState) error { st.Groups[g.ID] = g; return nil }); err != nil {
		return escim.Resource{}, h.s.fail(err, "create group")
	}
	return h.Get(r, g.ID)
}

func (h groups) Replace(r *http.Request, id string, attrs escim.ResourceAttributes) (escim.Resource, error) {
	return h.edit(r, id, func(*store.SCIMGroup) (map[string]any, error) { return attrs, nil })
}

// Patch answers 204 No Content, as Entra ID expects of a group (Okta takes it too): a large
// group's members are not sent back for every change. The id in the value of Okta's rename
// never gets here: the library drops it (ids are the server's).
func (h groups) Patch(r *http.Request, id string, ops []escim.PatchOperation) (escim.Resource, error) {
	res, err := h.edit(r, id, func(cur *store.SCIMGroup) (map[string]any, error) {
		res := groupAttributes(cur)
		for _, op := range ops {
			if err := applyOp(res, op); err != nil {
				return nil, err
			}
		}
		return res, nil
	})
	if err != nil {
		return res, err
	}
	return escim.Resource{}, nil
}

// edit rewrites group id from the attributes next gives for its current record.
func (h groups) edit(r *http.Request, id string, next func(cur *store.SCIMGroup) (map[string]any, error)) (escim.Resource, error) {
	c := callerOf(r)
	o, err := h.s.o.Store.Org(r.Context(), c.org)
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "read organisation")
	}
	err = h.s.change(r, o, func(st *store.SCIMState) error {
		cur := st.Groups[id]
		if cur == nil {
			return scimerrors.ScimErrorResourceNotFound(id)
		}
		attrs, err := next(cur)
		if err != nil {
			return err
		}
		g, err := groupFrom(attrs)
		if err != nil {
			return err
		}
		for _, m := range g.Members {
			if st.Users[m] == nil {
				return scimerrors.ScimErrorBadRequest(fmt.Sprintf("member %q is no user of this organisation", m))
			}
		}
		g.ID = id
		st.Groups[id] = g
		return nil
	})
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "change group")
	}
	return h.Get(r, id)
}

func (h groups) Delete(r *http.Request, id string) error {
	c := callerOf(r)
	o, err := h.s.o.Store.Org(r.Context(), c.org)
	if err != nil {
		return h.s.fail(err, "read organisation")
	}
	if err := h.s.change(r, o, func(st *store.SCIMState) error {
		if st.Groups[id] == nil {
			return scimerrors.ScimErrorResourceNotFound(id)
		}
		delete(st.Groups, id)
		return nil
	}); err != nil {
		return h.s.fail(err, "delete group")
	}
	return nil
}

func groupFrom(attrs map[string]any) (*store.SCIMGroup, error) {
	g := &store.SCIMGroup{}
	g.DisplayName, _ = getAttr(attrs, "displayName").(string)
	g.ExternalID, _ = getAttr(attrs, "externalId").(string)
	if strings.TrimSpace(g.DisplayName) == "" {
		return nil, scimerrors.ScimErrorBadRequest("displayName is required")
	}
	members, _ := getAttr(attrs, "members").([]any)
	for _, m := range members {
		mm, _ := m.(map[string]any)
		v, _ := getAttr(mm, "value").(string)
		if v == "" {
			return nil, scimerrors.ScimErrorBadRequest("a member needs a value (the user's id)")
		}
		g.Members = append(g.Members, v)
	}
	slices.Sort(g.Members)
	g.Members = slices.Compact(g.Members)
	return g, nil
}

func groupAttributes(g *store.SCIMGroup) map[string]any {
	res := map[string]any{"displayName": g.DisplayName}
	if g.ExternalID != "" {
		res["externalId"] = g.ExternalID
	}
	if len(g.Members) > 0 {
		ms := make([]any, len(g.Members))
		for i, m := range g.Members {
			ms[i] = map[string]any{"value": m}
		}
		res["members"] = ms
	}
	return res
}

func groupResource(g *store.SCIMGroup, userNames map[string]string, noMembers bool) escim.Resource {
	attrs := map[string]any{"displayName": g.DisplayName}
	if !noMembers && len(g.Members) > 0 {
		ms := make([]any, len(g.Members))
		for i, m := range g.Members {
			ms[i] = map[string]any{"value": m, "display": userNames[m], "type": "User"}
		}
		attrs["members"] = ms
	}
	res := escim.Resource{ID: g.ID, Attributes: attrs, Meta: escim.Meta{Created: &g.Created, LastModified: &g.Updated,
		Version: fmt.Sprintf(`W/"%d"`, g.Updated.UnixNano())}}
	if g.ExternalID != "" {
		res.ExternalID = optional.NewString(g.ExternalID)
	}
	return res
}

func names(us []store.SCIMUser) map[string]string {
	m := make(map[string]string, len(us))
	for _, u := range us {
		m[u.ID] = u.UserName
	}
	return m
}

// excludesMembers reports whether the request asks to leave members out (Entra ID's
// excludedAttributes=members).
func excludesMembers(r *http.Request) bool {
	for _, a := range strings.Split(r.URL.Query().Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return true
		}
	}
	return false
}
