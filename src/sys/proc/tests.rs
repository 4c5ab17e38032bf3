use super::*;

#[test]
fn exit_codes_follow_pythons_convention() {
    for (code, expect) in [(0, 0), (3, 3)] {
        match fork().unwrap() {
            Forked::Child => exit_now(code),
            Forked::Parent(pid) => assert_eq!(wait_exitcode(pid, true).unwrap(), Some(expect)),
        }
    }
}
