//! The power-cut model itself: what it keeps and what it takes back.

use std::fs;
use std::path::Path;

use super::*;

pub(crate) fn tracked(dir: &Path) -> (std::path::PathBuf, Arc<Plan>, Installed) {
    let root = dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let plan = Plan::new(&[&root]);
    plan.track_power(&dir.join("stash"), None).unwrap();
    let installed = plan.install();
    (root, plan, installed)
}

#[test]
fn a_power_cut_keeps_exactly_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (root, plan, _installed) = tracked(dir.path());
    let p = |name: &str| root.join(name);
    write_new(&p("kept"), b"kept", None, true).unwrap();
    write_new(&p("empty"), b"bytes never synced", None, false).unwrap();
    write_new(&p("removed"), b"removed", None, true).unwrap();
    sync_dir(&root).unwrap();
    // Durable bytes under a name that is not.
    write_new(&p("unnamed"), b"x", None, true).unwrap();
    rename(&p("kept"), &p("moved")).unwrap();
    remove_file(&p("removed")).unwrap();
    create_dir(&p("sub"), None).unwrap();
    plan.take_back();

    assert_eq!(fs::read(p("kept")).unwrap(), b"kept");
    assert!(!p("moved").exists());
    assert_eq!(fs::read(p("empty")).unwrap(), b"");
    assert!(!p("unnamed").exists());
    assert_eq!(fs::read(p("removed")).unwrap(), b"removed");
    assert!(!p("sub").exists());
    assert_eq!(plan.syncs(), 4);
}

#[test]
fn syncfs_makes_everything_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (root, plan, _installed) = tracked(dir.path());
    write_new(&root.join("a"), b"a", None, false).unwrap();
    create_dir_all(&root.join("x/y"), None).unwrap();
    hard_link(&root.join("a"), &root.join("x/y/b")).unwrap();
    syncfs(&root).unwrap();
    plan.take_back();
    assert_eq!(fs::read(root.join("x/y/b")).unwrap(), b"a");
}

#[test]
fn the_nth_operation_fails_once_or_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let plan = Plan::new(&[&root]);
    let _installed = plan.install();
    plan.set_fault(Fault::Once { at: 2, errno: EIO });
    let mut file = create(&root.join("f"), Create::New, None).unwrap();
    let e = file.write_all(b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EIO));
    file.write_all(b"y").unwrap();
    plan.set_fault(Fault::From {
        at: 4,
        errno: ENOSPC,
    });
    for _ in 0..3 {
        assert_eq!(file.sync().unwrap_err().raw_os_error(), Some(ENOSPC));
    }
    plan.heal();
    file.sync().unwrap();
    assert_eq!(plan.injected(), 4);
    // Outside the plan's roots nothing is counted or failed.
    plan.set_fault(Fault::From { at: 1, errno: EIO });
    write_new(&dir.path().join("elsewhere"), b"z", None, true).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"y");
}
