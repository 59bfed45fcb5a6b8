//! The compile-time layer's promises, proved by the compiler: each file under
//! `compile-fail/` must fail to build with the diagnostic beside it, and each under `pass/`
//! must build.

#[test]
fn unscoped_queries_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile-fail/*.rs");
    t.pass("tests/pass/*.rs");
}
