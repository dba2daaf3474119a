package authz

import "github.com/portcullis-proxy/portcullis/internal/reason"

// Reasons returns every code Decide can give, in check order (the first failing check wins),
// ending with reason.Allowed: for exhaustive tests and metric labels. The slice is new on
// each call.
func Reasons() []reason.Code {
	return []reason.Code{
		reason.NoOrg,
		reason.OrgUnknown,
		reason.OrgInactive,
		reason.NotMember,
		reason.MembershipRevoked,
		reason.MembershipSuspended,
		reason.MembershipExpired,
		reason.ReviewOverdue,
		reason.EmailDomainNotVerified,
		reason.KindNotAllowed,
		reason.PolicyExceeded,
		reason.RoleMissing,
		reason.RoleRequiresRequest,
		reason.PurposeMissing,
		reason.PurposeExpired,
		reason.Allowed,
	}
}
