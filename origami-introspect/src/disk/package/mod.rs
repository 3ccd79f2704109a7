//! The `package` section: installed packages, from each package manager's own database.
//!
//! Each manager is a [`PackageDb`]: it says whether the guest uses it and reads its
//! database into [`Package`] items: dpkg ([`dpkg::Dpkg`]), rpm in its three formats
//! ([`rpm::Rpm`]) and apk ([`apk::Apk`]), listed by [`package_dbs`].

use origami_frame::Package;

use crate::error::Error;
use crate::fs::GuestTree;

pub mod apk;
pub mod dpkg;
pub mod rpm;

/// One package manager's database in a guest.
pub trait PackageDb {
    /// The manager's name as frames spell it (`dpkg`, `rpm`, `apk`).
    fn manager(&self) -> &'static str;
    /// True when the guest has this manager's database.
    fn present(&self, tree: &GuestTree) -> bool;
    /// The installed packages, and the errors met reading them (a bad record is skipped
    /// and reported; the others are kept).
    fn installed(&self, tree: &GuestTree) -> (Vec<Package>, Vec<Error>);
}

/// Every package database this crate reads.
pub fn package_dbs() -> Vec<Box<dyn PackageDb>> {
    vec![
        Box::new(dpkg::Dpkg::default()),
        Box::new(rpm::Rpm::default()),
        Box::new(apk::Apk::default()),
    ]
}

/// The installed packages of every manager present in the guest, sorted by name and
/// architecture, with the errors met.
pub fn crawl(tree: &GuestTree) -> (Vec<Package>, Vec<Error>) {
    crawl_with(tree, dpkg::DEFAULT_MAX_STATUS)
}

/// As [`crawl`], with a bound on the size of dpkg's and apk's database files (rpm's, often
/// far larger, has its own: [`rpm::DEFAULT_MAX_DB`]).
pub fn crawl_with(tree: &GuestTree, max_db_size: u64) -> (Vec<Package>, Vec<Error>) {
    crawl_budgeted(tree, max_db_size, &crate::Budget::unlimited())
}

/// As [`crawl_with`], each database's bytes reserved on the crawl's memory `budget` while
/// they are parsed.
pub fn crawl_budgeted(
    tree: &GuestTree,
    max_db_size: u64,
    budget: &crate::Budget,
) -> (Vec<Package>, Vec<Error>) {
    let mut packages = Vec::new();
    let mut errors = Vec::new();
    let dbs: Vec<Box<dyn PackageDb>> = vec![
        Box::new(dpkg::Dpkg {
            max_status: max_db_size,
            budget: budget.clone(),
        }),
        Box::new(rpm::Rpm::default()),
        Box::new(apk::Apk {
            max_db: max_db_size,
        }),
    ];
    for db in dbs {
        if db.present(tree) {
            let (p, e) = db.installed(tree);
            packages.extend(p);
            errors.extend(e);
        }
    }
    packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    (packages, errors)
}
