import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

/**
 * A real JDBC client (pgjdbc) for tests/broker/pg/test_broker.py: connects through the jitgate
 * PostgreSQL broker and prints one line per thing it saw, for the test to check.
 *
 *     JGT_TOKEN=... java -cp /usr/share/java/postgresql.jar JdbcClient.java JDBC_URL USER
 */
public class JdbcClient {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", System.getenv("JGT_TOKEN"));  // never on the command line
        props.setProperty("prepareThreshold", "2");  // a named server-side statement from the 2nd run on
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            System.out.println("user " + conn.getMetaData().getUserName());
            try (Statement st = conn.createStatement()) {
                st.execute("create table jdbc_items (id int primary key, name text, price numeric)");
            }
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement("insert into jdbc_items values (?, ?, ?)")) {
                for (int i = 1; i <= 3; i++) {  // one pipelined batch: Parse/Bind/Execute x3, one Sync
                    ps.setInt(1, i);
                    ps.setString(2, "item-" + i);
                    ps.setBigDecimal(3, new BigDecimal(i + ".50"));
                    ps.addBatch();
                }
                System.out.println("batch " + ps.executeBatch().length);
            }
            conn.commit();
            try (PreparedStatement ps = conn.prepareStatement("select name from jdbc_items where id = ?")) {
                StringBuilder names = new StringBuilder("names");
                for (int i = 1; i <= 3; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        names.append(' ').append(rs.getString(1));
                    }
                }
                System.out.println(names);
            }
            try (PreparedStatement ps = conn.prepareStatement("insert into jdbc_items values (?, ?, ?)")) {
                ps.setInt(1, 1);
                ps.setString(2, "duplicate");
                ps.setBigDecimal(3, BigDecimal.ONE);
                ps.executeUpdate();
                System.out.println("error none");
            } catch (SQLException e) {
                System.out.println("error " + e.getSQLState());
                conn.rollback();
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select count(*) from jdbc_items")) {
                rs.next();
                System.out.println("count " + rs.getInt(1));
            }
            conn.commit();
        }
    }
}
