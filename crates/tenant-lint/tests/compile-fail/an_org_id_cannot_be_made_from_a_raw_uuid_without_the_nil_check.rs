use tenant_core::OrgId;

fn main() {
    let _org: OrgId = uuid::Uuid::nil().into();
}
