// Package console serves the self-serve console under /.portcullis/console/: pages where
// every signed-in person sees their own access (memberships, elevations, this session,
// requests) and asks for a role or a purpose they lack, and where an organisation's
// administrators answer the requests waiting for them and manage its members.
//
// The console holds no governance rules of its own. Every page reads, and every form
// changes, through the administration API (package admin), called in process as the
// signed-in person (admin.Server.As): a page can show or do exactly what the API allows that
// person, no more, and each change is audited by the API with the individual and the
// session. What the console adds is what a browser needs: the session (the proxy's gate), a
// CSRF token bound to it and a same-origin check on every form, POST-redirect-GET, a
// confirmation before a revocation, and a fresh step-up (console.step_up, the route-level
// machinery) before any administration page or change, per organisation.
//
// The pages are server-rendered with html/template in the shared layout (package page): no
// script, labelled forms, one heading per page. Their text is in one file, templates.html.
package console
