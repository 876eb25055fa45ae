import type { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";

const withKeys = { keys: { where: { revokedAt: null } }, application: true } as const;
export type ContractWithKeys = Prisma.ContractGetPayload<{ include: typeof withKeys }>;
export type ApplicationWithContracts = Prisma.ApplicationGetPayload<{ include: { contracts: { include: { keys: true; webhookEndpoint: true } } } }>;

export class ApplicationRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  createApplication(tx: Tx, data: Prisma.ApplicationCreateInput) {
    return tx.application.create({ data });
  }

  createContract(tx: Tx, data: Prisma.ContractUncheckedCreateInput) {
    return tx.contract.create({ data });
  }

  addKey(tx: Tx, data: Prisma.ContractKeyUncheckedCreateInput) {
    return tx.contractKey.create({ data });
  }

  revokeKeysExcept(tx: Tx, contractId: string, keepId: string) {
    return tx.contractKey.updateMany({ where: { contractId, revokedAt: null, id: { not: keepId } }, data: { revokedAt: new Date() } });
  }

  findApplication(id: string) {
    return this.prisma.application.findUnique({ where: { id }, include: { contracts: { include: { keys: true, webhookEndpoint: true } } } });
  }

  listApplications(): Promise<ApplicationWithContracts[]> {
    return this.prisma.application.findMany({ orderBy: { createdAt: "asc" }, include: { contracts: { include: { keys: true, webhookEndpoint: true } } } });
  }

  setApplicationDisabled(tx: Tx, id: string, disabledAt: Date | null) {
    return tx.application.update({ where: { id }, data: { disabledAt } });
  }

  /** The contract with its active keys and its application. */
  findContract(id: string, tx: Tx = this.prisma): Promise<ContractWithKeys | null> {
    return tx.contract.findUnique({ where: { id }, include: withKeys });
  }

  updateContract(tx: Tx, id: string, data: Prisma.ContractUpdateInput) {
    return tx.contract.update({ where: { id }, data });
  }

  /** The application's active READ contract with its active keys (for data sent back by users). */
  findReadContract(applicationId: string): Promise<ContractWithKeys | null> {
    return this.prisma.contract.findFirst({
      where: { applicationId, kind: "READ", disabledAt: null },
      include: withKeys,
      orderBy: { createdAt: "asc" },
    });
  }
}
