//! Tests of the retry rules.
