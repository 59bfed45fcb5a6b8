use tenant_core::OnWithOrg;

fn main() {
    let _on = OnWithOrg { on: true, org: true };
}
