# Seeds a moto account with one violation per CIS check that Prowler and iam-warden share (bench/prowler.sh).
import boto3, os, sys
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
admin = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
god = iam.create_policy(PolicyName="god", PolicyDocument=admin)["Policy"]["Arn"]
iam.create_user(UserName="alice")
iam.create_login_profile(UserName="alice", Password="Xx1!xxxxxxxxxxxx")
iam.attach_user_policy(UserName="alice", PolicyArn=god)
iam.create_role(RoleName="ops", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
iam.attach_role_policy(RoleName="ops", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
iam.create_group(GroupName="devs")
iam.attach_group_policy(GroupName="devs", PolicyArn="arn:aws:iam::aws:policy/AWSCloudShellFullAccess")
iam.upload_server_certificate(ServerCertificateName="old-tls", CertificateBody="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", PrivateKey="-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----")
print("seeded")
