//! The README's "Testing your agent" section shows `tests/testing_your_agent.rs` verbatim, so
//! the test readers copy is the one `cargo test --workspace` runs.

#[test]
fn the_readme_shows_the_test_that_runs() {
    let readme = include_str!("../../README.md");
    let test = include_str!("testing_your_agent.rs");
    assert!(
        readme.contains(&format!("```rust,ignore\n{test}```")),
        "README.md's \"Testing your agent\" block differs from examples/tests/testing_your_agent.rs: copy the file into it"
    );
}
