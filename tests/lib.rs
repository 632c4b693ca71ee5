//! Helpers live in the test binary itself; this empty library only gives the package a target.
