package apitype

// ErrorCode is the text of an agent API error answer, which the agent
// maps to its own errors and exit codes.
type ErrorCode string

// The agent API's error codes.
const (
	// Registration.
	CodeInvalidKey    ErrorCode = "invalid-key"       // no such activation key
	CodeLimitReached  ErrorCode = "key-limit-reached" // the key has as many servers as its limit
	CodeIPNotAllowed  ErrorCode = "ip-not-allowed"    // the server's address is outside the key's IP ranges
	CodeBadHostname   ErrorCode = "bad-hostname"      // a hostname registration or check-in refuses
	CodeBadRequest    ErrorCode = "bad-request"       // a body that is not what the route takes
	CodeNotRegistered ErrorCode = "not-registered"    // unregister from a server known by its IP license

	// Authentication of a server.
	CodeUnregistered ErrorCode = "unregistered" // unknown server id, wrong secret, or no IP license
	CodeKeyRevoked   ErrorCode = "key-revoked"  // the server's activation key was deleted

	// The index and bundles.
	CodeBadBuildID ErrorCode = "bad-build-id" // not a GNU build-id
	CodeNotFound   ErrorCode = "not-found"    // no such bundle or path

	// Throttling: too many wrong keys from one source.
	CodeTooManyAttempts ErrorCode = "too-many-attempts"
)

// Codes an older portal answered with for a server it does not know; the
// agent reads them as CodeUnregistered.
const (
	CodeUnknownServer ErrorCode = "unknown-server"
	CodeBadSecret     ErrorCode = "bad-secret"
)

// BadField is the code of a check-in or registration whose field breaks
// its rule: "bad-" and the field's name, as "bad-release".
func BadField(field string) ErrorCode { return ErrorCode("bad-" + field) }

// Error is the body of every JSON error answer. For the agent API its
// text is an ErrorCode; for the REST API a message for a person.
type Error struct {
	Error string `json:"error"`
}
