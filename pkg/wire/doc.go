// Package wire holds what the enrollment client and server say to each other:
// request and response bodies, the names they share, and the closed set of
// error codes with the HTTP status each one maps to.
//
// Both sides import it; it imports neither.
package wire
