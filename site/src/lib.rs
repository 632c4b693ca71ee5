//! Placeholder: pages arrive with the site issue.
