use tenant_core::{OrgId, OrgScoped};

fn escape(connect: impl Fn() -> diesel::PgConnection, org: OrgId) {
    let scoped;
    {
        let mut conn = connect();
        scoped = OrgScoped::begin(&mut conn, org, &two_companies::REGISTRY).unwrap();
    }
    scoped.commit().unwrap();
}

fn main() {}
